"""Helpers for the creator-page tests: campaigns, participants and conversations made in bulk
inside the org's tenant context, and URL shortcuts."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.urls import reverse
from django.utils import timezone

from campaigns import services
from campaigns.models import Campaign, Participant
from campaigns.settings_schema import CampaignSettings
from conversations.models import Conversation, Message
from tap.tenancy import org_context

MISSION = "Learn how engineers use AI tools day to day."
QUESTION = "How did you use AI tools this week?"


def url(name, org, *args, **query):
    path = reverse(f"campaigns:{name}", args=[org.slug, *args])
    if query:
        from urllib.parse import urlencode

        path += "?" + urlencode(query)
    return path


def campaign(org, actor, *, name="Tooling", status="draft", anonymous=False, **fields):
    """A campaign made through the service, then put straight into `status`."""
    with org_context(org.id):
        made = services.campaign_create(
            actor=actor,
            org=org,
            name=name,
            mission=MISSION,
            opening_question=QUESTION,
            settings=CampaignSettings(anonymous=anonymous),
        )
        if status != "draft" or fields:
            Campaign.objects.filter(pk=made.pk).update(status=status, **fields)
            made.refresh_from_db()
    return made


def campaigns_in_bulk(org, count, *, status="active"):
    with org_context(org.id):
        Campaign.objects.bulk_create(
            Campaign(
                organization=org,
                name=f"Campaign {i:05d}",
                mission=MISSION,
                mission_summary=f"Summary {i}",
                opening_question=QUESTION,
                status=status,
            )
            for i in range(count)
        )


def participants_in_bulk(
    org, campaign, count, *, statuses=("invited",), start: int = 0
) -> list[Participant]:
    """`count` participants cycling through `statuses`, numbered from `start`."""
    now = timezone.now()
    rows = [
        Participant(
            organization=org,
            campaign=campaign,
            email=f"person{i:05d}@x.example",
            name=f"Person {i}" if i % 2 else "",
            status=statuses[i % len(statuses)],
            invited_at=None if statuses[i % len(statuses)] == "pending" else now,
            last_activity_at=now - timedelta(hours=i),
            bounce_reason="550 mailbox unavailable"
            if statuses[i % len(statuses)] == "bounced"
            else "",
        )
        for i in range(start, start + count)
    ]
    with org_context(org.id):
        return Participant.objects.bulk_create(rows, batch_size=1000)


def conversation(org, campaign, participant, bodies=(), *, start=None) -> Conversation:
    """A conversation whose messages alternate bot / participant, a minute apart."""
    start = start or timezone.now() - timedelta(hours=1)
    with org_context(org.id):
        made = Conversation.objects.create(
            organization=org, campaign=campaign, participant=participant, created_at=start
        )
        Message.objects.bulk_create(
            Message(
                organization=org,
                conversation=made,
                sender="bot" if i % 2 == 0 else "participant",
                body=body,
                client_key=uuid.uuid4().hex,
                # bot 0 asks, participant 1 answers, bot 1 follows up on it, …
                turn=(i + 1) // 2,
                created_at=start + timedelta(minutes=i),
            )
            for i, body in enumerate(bodies)
        )
    return made


def messages_of(response) -> list[str]:
    return [str(m) for m in response.context["messages"]] if response.context else []
