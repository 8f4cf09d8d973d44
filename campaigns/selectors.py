"""Reads for campaign pages: lists with their counts, participant tables, transcripts, exports.

Everything goes through the scoped managers (the current organisation's rows only) and takes
the org or the campaign first. Counts are annotated or aggregated in one query, so a page costs
the same number of queries whatever the number of campaigns or participants."""

from __future__ import annotations

from django.db.models import Count, IntegerField, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce

from campaigns.models import Campaign, CampaignEmail, Participant
from conversations.models import Conversation, Message

P = Participant.Status

# What the counts mean: "invited" is everyone an invitation went to (bounced included: the
# attempt counts against the campaign), "started" everyone who began a conversation.
INVITED = [P.INVITED, P.OPENED, P.IN_PROGRESS, P.COMPLETED, P.DECLINED, P.BOUNCED]
STARTED = [P.IN_PROGRESS, P.COMPLETED]


def _participant_count(**filters):
    """A correlated COUNT over the campaign's participants (uses participants_status_idx)."""
    rows = (
        Participant.objects.filter(campaign=OuterRef("pk"), **filters)
        .order_by()
        .values("campaign")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return Coalesce(Subquery(rows, output_field=IntegerField()), Value(0))


def with_counts(campaigns):
    """Annotate invited / started / completed counts on a campaign queryset (same query)."""
    return campaigns.annotate(
        invited_count=_participant_count(status__in=INVITED),
        started_count=_participant_count(status__in=STARTED),
        completed_count=_participant_count(status=P.COMPLETED),
    )


def completion_rate(completed: int, invited: int) -> int | None:
    """Whole percent of invited participants who completed; None before anyone is invited."""
    return round(100 * completed / invited) if invited else None


def campaign_list(*, org, status: str = "", search: str = "", include_archived: bool = False):
    """The org's campaigns, newest first, with counts. Archived ones only when asked for
    (or when filtering on the archived status itself)."""
    campaigns = Campaign.objects.filter(organization=org)
    if status:
        campaigns = campaigns.filter(status=status)
    elif not include_archived:
        campaigns = campaigns.exclude(status=Campaign.Status.ARCHIVED)
    if search.strip():
        campaigns = campaigns.filter(name__icontains=search.strip())
    return with_counts(campaigns.order_by("-created_at", "-pk"))


def archived_count(*, org) -> int:
    return Campaign.objects.filter(organization=org, status=Campaign.Status.ARCHIVED).count()


def recent_campaigns(*, org, limit: int = 5) -> list[Campaign]:
    return list(campaign_list(org=org)[:limit])


def participant_status_counts(*, campaign) -> dict:
    """{status: n} for every status, plus total / invited / started / completed / rate."""
    rows = dict(
        Participant.objects.filter(campaign=campaign)
        .order_by()
        .values_list("status")
        .annotate(n=Count("pk"))
        .values_list("status", "n")
    )
    by_status = {value: rows.get(value, 0) for value in P.values}
    invited = sum(by_status[s] for s in INVITED)
    completed = by_status[P.COMPLETED]
    return {
        "by_status": by_status,
        "total": sum(by_status.values()),
        "invited": invited,
        "started": sum(by_status[s] for s in STARTED),
        "completed": completed,
        "rate": completion_rate(completed, invited),
    }


def campaign_participants(*, campaign, status: str = ""):
    """The participant table: each row knows its conversation (id or None)."""
    participants = Participant.objects.filter(campaign=campaign)
    if status:
        participants = participants.filter(status=status)
    conversation = Conversation.objects.filter(participant=OuterRef("pk")).values("pk")[:1]
    # The latest invitation's error when it failed ("" otherwise): "invited" alone would hide
    # that the email never left.
    latest_invitation = CampaignEmail.objects.filter(
        participant=OuterRef("pk"), kind=CampaignEmail.Kind.INVITATION
    ).order_by("-sequence")[:1]
    return (
        participants.annotate(
            conversation_id=Subquery(conversation),
            invitation_status=Subquery(latest_invitation.values("status")),
            invitation_error=Subquery(latest_invitation.values("error")),
        )
        .select_related("developer_identity")
        .order_by("email", "pk")
    )


def participant_conversation_id(*, participant):
    return Conversation.objects.filter(participant=participant).values_list("pk", flat=True).first()


def campaign_has_responses(*, campaign) -> bool:
    return Conversation.objects.filter(campaign=campaign).exists()


# --- anonymity -------------------------------------------------------------------------------
# Anonymous campaigns show "Participant 7" instead of a name: the number is the conversation's
# place in the campaign (oldest first), stored on it (`Conversation.number`) and never given
# again, so the same person has the same number on every page, in every export and analysis —
# also after someone else was erased — and nothing in it points back at the participant row.


def pseudonym(number: int) -> str:
    return f"Participant {number}"


def speaker_label(*, anonymous: bool, number: int, name: str, email: str) -> str:
    """How a conversation's participant is named on screen and in exports."""
    if anonymous:
        return pseudonym(number)
    return f"{name} <{email}>" if name else email


def campaign_conversations(*, campaign):
    """The campaign's conversations, oldest first (by pseudonym `number`), each with its
    participant and a `message_count`."""
    messages = (
        Message.objects.filter(conversation=OuterRef("pk"))
        .order_by()
        .values("conversation")
        .annotate(n=Count("pk"))
        .values("n")
    )
    return (
        Conversation.objects.filter(campaign=campaign)
        .select_related("participant")
        .annotate(
            message_count=Coalesce(Subquery(messages, output_field=IntegerField()), Value(0)),
        )
        .order_by("number")
    )


def conversation_messages(*, conversation) -> list[Message]:
    return list(Message.objects.filter(conversation=conversation).order_by("created_at", "pk"))


def conversation_numbers(*, campaign) -> dict:
    """{conversation id: pseudonym number} for a whole campaign (exports)."""
    numbers = Conversation.objects.filter(campaign=campaign).values_list("pk", "number")
    return dict(numbers.iterator(chunk_size=2000))


def export_rows(*, campaign):
    """Every message of the campaign, by conversation then time, as tuples:
    (conversation id, sender, created_at, body, participant name, participant email).
    Streamed from a server-side cursor: callers iterate, never list()."""
    return (
        Message.objects.filter(conversation__campaign=campaign)
        .order_by("conversation__created_at", "conversation_id", "created_at", "pk")
        .values_list(
            "conversation_id",
            "sender",
            "created_at",
            "body",
            "conversation__participant__name",
            "conversation__participant__email",
        )
        .iterator(chunk_size=2000)
    )
