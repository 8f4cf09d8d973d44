"""Conversation side effects queued by other apps (by name, through the outbox)."""

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from conversations import services
from conversations.models import CAMPAIGN_CLOSED, Conversation, Message
from tap.ai import InterviewReply, InterviewRequest, Turn, get_backend
from tap.outbox import outbox_task
from tap.tenancy import current_org_id, org_context, org_ids_of


@outbox_task(queue="default", name="conversations.campaign_completed")
def campaign_completed(*, campaign_id: str) -> int:
    """A campaign was completed: close its open conversations and queue its analysis."""
    now = timezone.now()
    closed = Conversation.objects.filter(campaign_id=campaign_id, status="active").update(
        status=Conversation.Status.COMPLETED,
        ended_at=now,
        end_reason=CAMPAIGN_CLOSED,
        updated_at=now,
    )
    analysis_for_completed_campaign(campaign_id)
    return closed


def reply_given_up(*, conversation_id: str, turn: int) -> None:
    """The reply job was given up — the model failed on every attempt, or the worker died
    running it: the participant sees a calm message and can ask again, rather than wait."""
    services.reply_failed(conversation_id=conversation_id, turn=turn, error="given up")


@outbox_task(queue="ai", name="conversations.reply", atomic=False, on_dead=reply_given_up)
def reply(*, conversation_id: str, turn: int) -> None:
    """The interviewer's reply to one participant turn.

    1. Read the conversation in a short transaction; stop if the turn is answered already.
    2. Call the model outside any transaction (it can take seconds).
    3. Re-lock and store — unless the conversation moved on meanwhile (services.reply_store).
    Any failure (a model outage, a rejected request, a time limit) raises, and the outbox
    retries with back-off; once it gives up, `reply_given_up` tells the participant."""
    org_id = current_org_id()
    with org_context(org_id):
        conversation = (
            Conversation.objects.select_related("campaign").filter(pk=conversation_id).first()
        )
        if (
            conversation is None
            or conversation.status != Conversation.Status.ACTIVE
            or conversation.participant_turns != turn
            or not conversation.awaiting_reply
        ):
            return
        spent = services.budget_check(conversation)
        if spent and spent[0] == "conversation":
            services.reply_store(
                conversation_id=conversation_id,
                turn=turn,
                reply=InterviewReply(text="", end=True, end_reason=spent[1], model="budget"),
            )
            return
        if spent:
            services.reply_failed(conversation_id=conversation_id, turn=turn, error=spent[1])
            return
        request = interview_request(conversation)
    answer = get_backend().interview(request)
    with org_context(org_id):
        services.reply_store(conversation_id=conversation_id, turn=turn, reply=answer)


def interview_request(conversation: Conversation) -> InterviewRequest:
    options = conversation.campaign.options
    history = tuple(
        Turn(sender=m.sender, text=m.body)
        for m in Message.objects.filter(conversation=conversation).order_by("turn", "created_at")
    )
    return InterviewRequest(
        mission=conversation.campaign.mission,
        opening_question=conversation.campaign.opening_question,
        tone=options.tone,
        language=options.language,
        max_follow_ups=options.max_follow_ups,
        follow_ups_asked=conversation.follow_ups_asked,
        history=history,
    )


@shared_task(name="conversations.sweep", ignore_result=True)
def sweep() -> int:
    """Beat: mark conversations idle past TAP_ABANDON_AFTER_HOURS as abandoned, one
    top-level transaction per organisation."""
    org_ids = org_ids_of(
        Conversation.all_objects.using("service").filter(status=Conversation.Status.ACTIVE)
    )
    abandoned = 0
    for org_id in org_ids:
        with org_context(org_id):
            abandoned += services.conversations_abandon_idle(
                idle_hours=settings.TAP_ABANDON_AFTER_HOURS
            )
    return abandoned


# --- campaign analysis (conversations/analysis/) -------------------------------------------


def analysis_given_up(*, campaign_id: str, input_hash: str, **_options) -> None:
    """The analysis job was given up (its worker died or timed out on every attempt): the
    request fails with a reason, and Refresh is offered again."""
    from conversations.analysis.service import analysis_given_up as given_up  # noqa: PLC0415

    given_up(campaign_id=campaign_id, input_hash=input_hash)


@outbox_task(
    queue="analysis", name="conversations.analysis_run", atomic=False, on_dead=analysis_given_up
)
def analysis_run(
    *, campaign_id: str, input_hash: str, include_in_progress: bool = True, full: bool = False
) -> None:
    """Compute a requested campaign analysis (conversations.analysis.service.analysis_run)."""
    from conversations.analysis.service import analysis_run as run  # noqa: PLC0415

    run(
        campaign_id=campaign_id,
        input_hash=input_hash,
        include_in_progress=include_in_progress,
        full=full,
    )


@shared_task(name="conversations.analysis_daily", ignore_result=True)
def analysis_daily() -> int:
    """Beat, daily: queue the analysis of active campaigns with new or changed conversations,
    one top-level transaction per organisation."""
    from campaigns.models import Campaign  # noqa: PLC0415
    from conversations.analysis.service import campaigns_analyze_due  # noqa: PLC0415

    org_ids = org_ids_of(
        Campaign.all_objects.using("service").filter(status=Campaign.Status.ACTIVE)
    )
    queued = 0
    for org_id in org_ids:
        with org_context(org_id):
            queued += campaigns_analyze_due()
    return queued


def analysis_for_completed_campaign(campaign_id: str) -> None:
    """A completed campaign is analysed once more, over its final conversations (queued on
    the `analysis` queue; nothing happens when the stored analysis is already current)."""
    from campaigns.models import Campaign  # noqa: PLC0415
    from conversations.analysis.service import campaign_analyze  # noqa: PLC0415

    campaign = Campaign.objects.filter(pk=campaign_id).first()
    if campaign is not None and campaign.conversations.filter(participant_turns__gt=0).exists():
        campaign_analyze(actor=None, campaign=campaign)
