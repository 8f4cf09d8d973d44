"""Conversation side effects queued by other apps (by name, through the outbox)."""

from django.utils import timezone

from conversations.models import Conversation
from tap.outbox import outbox_task

CAMPAIGN_CLOSED = "campaign closed"


@outbox_task(queue="default", name="conversations.campaign_completed")
def campaign_completed(*, campaign_id: str) -> int:
    """A campaign was completed: close its open conversations. (The analysis issue adds
    queueing the campaign's analysis here.)"""
    now = timezone.now()
    return Conversation.objects.filter(campaign_id=campaign_id, status="active").update(
        status=Conversation.Status.COMPLETED,
        ended_at=now,
        end_reason=CAMPAIGN_CLOSED,
        updated_at=now,
    )
