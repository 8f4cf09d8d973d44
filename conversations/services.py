"""Conversations: the participant's turns and the interviewer's replies.

Turn n is the participant's n-th message and the interviewer's reply to it; the opening
question is the bot's turn 0. A reply is stored at most once per turn (a unique constraint),
so a reply task that runs twice — or an SDK retry after a lost response — cannot add a
second one.
"""

from __future__ import annotations

import re
from datetime import timedelta

from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from campaigns.models import Campaign, Participant
from conversations import pollstate
from conversations.models import Conversation, Message
from tap import outbox
from tap.orgs.services import audit

MAX_MESSAGE_CHARS = 5000
CLIENT_KEY = re.compile(r"^[A-Za-z0-9_-]{8,64}$")
PARTICIPANT_ENDED = "participant ended"
ABANDONED = "abandoned"
PARTICIPANT_ACTIVITY_GRAIN = timedelta(minutes=1)


def conversation_open(*, participant: Participant) -> Conversation:
    """The participant's conversation, created with the opening question on first visit."""
    conversation = Conversation.objects.filter(participant=participant).first()
    if conversation is not None:
        return conversation
    campaign = participant.campaign
    with transaction.atomic():
        conversation, created = Conversation.objects.get_or_create(
            organization_id=participant.organization_id,
            participant=participant,
            defaults={"campaign": campaign, "last_activity_at": timezone.now()},
        )
        if created:
            Message.objects.create(
                organization_id=participant.organization_id,
                conversation=conversation,
                sender=Message.Sender.BOT,
                body=campaign.opening_question,
                client_key="opening",
                turn=0,
            )
    return conversation


def _participant_touch_due(participant: Participant, now) -> bool:
    """Whether a post must write the participant row: its status changes, or its last
    activity (shown to the minute on the campaign page) is over a minute old. Skipping the
    write otherwise keeps a post to ten queries."""
    if participant.status == Participant.Status.COMPLETED:
        return False
    if participant.status not in (Participant.Status.IN_PROGRESS, Participant.Status.DECLINED):
        return True
    last = participant.last_activity_at
    return last is None or now - last >= PARTICIPANT_ACTIVITY_GRAIN


def message_post(*, participant: Participant, body: str, client_key: str) -> tuple[Message, bool]:
    """Store the participant's message and queue the interviewer's reply.

    Idempotent on `client_key`: a double submit or a network retry returns the message
    already stored (created=False) instead of adding a turn."""
    body = (body or "").strip()
    if not body:
        raise ValidationError("Write an answer before sending.")
    if "\x00" in body:  # PostgreSQL text cannot hold it, and no keyboard types it
        raise ValidationError(
            "Your answer contains a null character, which can't be saved. Remove it and send again."
        )
    if len(body) > MAX_MESSAGE_CHARS:
        raise ValidationError(
            f"Please keep an answer under {MAX_MESSAGE_CHARS:,} characters "
            f"(this one has {len(body):,})."
        )
    if not CLIENT_KEY.match(client_key or ""):
        raise ValidationError("The form expired. Reload the page and send again.")
    if participant.campaign.status != Campaign.Status.ACTIVE:
        raise ValidationError("This campaign is not taking answers right now.")
    with transaction.atomic():
        # One locked read (with the campaign) serialises posts to this conversation.
        locked = Conversation.objects.select_for_update(of=("self",)).select_related("campaign")
        conversation = locked.filter(participant=participant).first()
        if conversation is None:  # the first answer opens the conversation
            conversation_open(participant=participant)
            conversation = locked.get(participant=participant)
        existing = Message.objects.filter(conversation=conversation, client_key=client_key).first()
        if existing is not None:
            return existing, False
        if conversation.campaign.status != Campaign.Status.ACTIVE:
            raise ValidationError("This campaign is not taking answers right now.")
        if conversation.status == Conversation.Status.COMPLETED:
            raise ValidationError("This conversation has ended. Thank you!")
        if conversation.awaiting_reply:
            raise ValidationError("Please wait for the interviewer's reply before answering.")
        now = timezone.now()
        turn = conversation.participant_turns + 1
        message = Message.objects.create(
            organization_id=conversation.organization_id,
            conversation=conversation,
            sender=Message.Sender.PARTICIPANT,
            body=body,
            client_key=client_key,
            turn=turn,
        )
        conversation.participant_turns = turn
        conversation.awaiting_reply = True
        conversation.reply_error = ""
        conversation.status = Conversation.Status.ACTIVE  # an abandoned one comes back
        conversation.end_reason = ""
        conversation.last_activity_at = now
        conversation.save(
            update_fields=[
                "participant_turns",
                "awaiting_reply",
                "reply_error",
                "status",
                "end_reason",
                "last_activity_at",
                "updated_at",
            ]
        )
        if _participant_touch_due(participant, now):
            # Someone who asked for no more emails may still answer: they stay declined (no
            # reminders) until they finish.
            Participant.objects.filter(pk=participant.pk).exclude(
                status=Participant.Status.COMPLETED
            ).update(
                status=Case(
                    When(status=Participant.Status.DECLINED, then=F("status")),
                    default=Value(Participant.Status.IN_PROGRESS),
                ),
                last_activity_at=now,
                updated_at=now,
            )
        outbox.enqueue(
            "conversations.reply",
            queue="ai",
            org_id=conversation.organization_id,
            conversation_id=str(conversation.pk),
            turn=turn,
        )
        pollstate.forget_on_commit(conversation.pk)
    return message, True


def reply_retry(*, conversation: Conversation) -> None:
    """After the interviewer failed for good, the participant asks again — also days later,
    once the idle sweep has marked the conversation abandoned (asking brings it back)."""
    with transaction.atomic():
        conversation = (
            Conversation.objects.select_for_update(of=("self",))
            .select_related("campaign")
            .get(pk=conversation.pk)
        )
        if (
            not conversation.reply_error
            or conversation.status == Conversation.Status.COMPLETED
            or conversation.campaign.status != Campaign.Status.ACTIVE
        ):
            return
        conversation.reply_error = ""
        conversation.awaiting_reply = True
        conversation.status = Conversation.Status.ACTIVE
        conversation.end_reason = ""
        conversation.last_activity_at = timezone.now()
        conversation.save(
            update_fields=[
                "reply_error",
                "awaiting_reply",
                "status",
                "end_reason",
                "last_activity_at",
                "updated_at",
            ]
        )
        outbox.enqueue(
            "conversations.reply",
            queue="ai",
            org_id=conversation.organization_id,
            conversation_id=str(conversation.pk),
            turn=conversation.participant_turns,
        )
        pollstate.forget_on_commit(conversation.pk)


def reply_store(*, conversation_id, turn: int, reply) -> Message | None:
    """Store the interviewer's reply to `turn`, unless the conversation moved on or a reply
    is already there. Returns the stored message, or None."""
    with transaction.atomic():
        conversation = (
            Conversation.objects.select_for_update()
            .select_related("campaign")
            .filter(pk=conversation_id)
            .first()
        )
        if (
            conversation is None
            or conversation.status != Conversation.Status.ACTIVE
            or conversation.participant_turns != turn
            or not conversation.awaiting_reply
        ):
            return None
        body = reply.text.strip()
        if reply.end:
            closing = conversation.campaign.options.closing_message
            body = f"{body}\n\n{closing}".strip() if body else closing
        try:
            with transaction.atomic():
                message = Message.objects.create(
                    organization_id=conversation.organization_id,
                    conversation=conversation,
                    sender=Message.Sender.BOT,
                    body=body,
                    client_key=f"reply-{turn}",
                    turn=turn,
                    model=reply.model,
                    tokens_in=reply.tokens_in,
                    tokens_out=reply.tokens_out,
                    latency_ms=reply.latency_ms,
                )
        except IntegrityError:
            return None  # stored by a twin run of the same task
        now = timezone.now()
        conversation.awaiting_reply = False
        conversation.last_activity_at = now
        conversation.tokens_in_total += reply.tokens_in or 0
        conversation.tokens_out_total += reply.tokens_out or 0
        fields = ["awaiting_reply", "last_activity_at", "tokens_in_total", "tokens_out_total"]
        if reply.end:
            _complete(conversation, reply.end_reason or "mission covered", now)
            fields += ["status", "ended_at", "end_reason"]
        else:
            conversation.follow_ups_asked += 1
            fields.append("follow_ups_asked")
        conversation.save(update_fields=[*fields, "updated_at"])
        pollstate.forget_on_commit(conversation.pk)
    return message


def reply_failed(*, conversation_id, turn: int, error: str) -> None:
    """The interviewer could not answer after every retry: tell the participant calmly."""
    pollstate.forget_on_commit(conversation_id)
    Conversation.objects.filter(
        pk=conversation_id, participant_turns=turn, awaiting_reply=True
    ).update(
        awaiting_reply=False,
        reply_error="The interviewer could not answer just now. Please try again.",
        updated_at=timezone.now(),
    )


def _complete(conversation: Conversation, reason: str, now) -> None:
    conversation.status = Conversation.Status.COMPLETED
    conversation.ended_at = now
    conversation.end_reason = reason
    Participant.objects.filter(pk=conversation.participant_id).update(
        status=Participant.Status.COMPLETED, last_activity_at=now, updated_at=now
    )


NOTHING_TO_FINISH = (
    "You haven't answered yet, so there is nothing to finish. Answer the question to take "
    "part, or just close this page: your link keeps working while the campaign is open."
)


def nothing_to_finish(conversation: Conversation | None) -> bool:
    """No answer yet: "I'm done" has nothing to end (and is not offered)."""
    return conversation is None or conversation.participant_turns == 0


def conversation_end_by_participant(*, participant: Participant) -> Conversation:
    """The participant says they are done: the closing message, and the transcript. Someone
    who has not answered has nothing to finish, and does not count as having taken part."""
    with transaction.atomic():
        conversation = (
            Conversation.objects.select_for_update()
            .select_related("campaign")
            .filter(participant=participant)
            .first()
        )
        if conversation is not None and conversation.status == Conversation.Status.COMPLETED:
            return conversation
        if nothing_to_finish(conversation):
            raise ValidationError(NOTHING_TO_FINISH)
        now = timezone.now()
        turn = conversation.participant_turns
        Message.objects.get_or_create(
            organization_id=conversation.organization_id,
            conversation=conversation,
            client_key="closing",
            defaults={
                "sender": Message.Sender.BOT,
                "body": conversation.campaign.options.closing_message,
                # After the last answered turn: never collides with a reply.
                "turn": turn + 1,
            },
        )
        conversation.awaiting_reply = False
        _complete(conversation, PARTICIPANT_ENDED, now)
        conversation.save(
            update_fields=["awaiting_reply", "status", "ended_at", "end_reason", "updated_at"]
        )
        pollstate.forget_on_commit(conversation.pk)
        audit(
            org_id=conversation.organization_id,
            actor=None,
            action="conversation.ended",
            target=conversation,
            reason=PARTICIPANT_ENDED,
        )
    return conversation


def conversations_abandon_idle(*, idle_hours: int, now=None) -> int:
    """Mark conversations of the current organisation idle for longer than `idle_hours` as
    abandoned (a later message from the participant reopens them)."""

    now = now or timezone.now()
    return Conversation.objects.filter(
        status=Conversation.Status.ACTIVE,
        awaiting_reply=False,
        last_activity_at__lt=now - timedelta(hours=idle_hours),
    ).update(status=Conversation.Status.ABANDONED, end_reason=ABANDONED, updated_at=now)


# --- budgets -------------------------------------------------------------------------------

BUDGET_CONVERSATION = "length limit reached"


def budget_check(conversation: Conversation, *, now=None) -> tuple[str, str] | None:
    """Runaway cost stops here. Returns (scope, reason) when a budget is spent:
    ("conversation", …) ends the conversation politely; ("org", …) pauses replies for the
    organisation until tomorrow (UTC)."""
    from django.conf import settings  # noqa: PLC0415
    from django.db.models import Sum  # noqa: PLC0415

    now = now or timezone.now()
    if conversation.participant_turns > settings.TAP_MAX_TURNS_PER_CONVERSATION or (
        conversation.tokens_in_total + conversation.tokens_out_total
        >= settings.TAP_MAX_TOKENS_PER_CONVERSATION
    ):
        return ("conversation", BUDGET_CONVERSATION)
    start_of_day = now.replace(hour=0, minute=0, second=0, microsecond=0)
    used = Message.objects.filter(
        sender=Message.Sender.BOT, created_at__gte=start_of_day
    ).aggregate(total=Sum("tokens_in", default=0) + Sum("tokens_out", default=0))["total"]
    if used >= settings.TAP_ORG_DAILY_TOKEN_BUDGET:
        return ("org", "daily AI budget spent")
    return None
