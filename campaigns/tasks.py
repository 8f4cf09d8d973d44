"""Campaign side effects: invitation and reminder emails, mission summaries, the sweeper."""

from __future__ import annotations

import logging
import smtplib

from celery import shared_task
from django.urls import reverse
from django.utils import timezone

from campaigns import services
from campaigns.models import Campaign, CampaignEmail, Participant
from tap.ai import get_backend
from tap.emails import build_email
from tap.outbox import outbox_task
from tap.tenancy import current_org_id, org_context

logger = logging.getLogger(__name__)

# SMTP answers that mean "this address will never work" (5xx), as opposed to a server that
# is down or busy (4xx, connection errors), which the outbox retries with back-off.
PERMANENT = (smtplib.SMTPRecipientsRefused,)


class TransientEmailError(RuntimeError):
    pass


@outbox_task(queue="email", name="campaigns.send_campaign_email", atomic=False)
def send_campaign_email(*, email_id: str) -> None:
    org_id = current_org_id()
    # 1. Claim the email row and commit: a second run of this job finds it claimed.
    with org_context(org_id):
        claimed = CampaignEmail.objects.filter(
            pk=email_id, status=CampaignEmail.Status.PENDING
        ).update(status=CampaignEmail.Status.SENDING, updated_at=timezone.now())
        if not claimed:
            return
        email = CampaignEmail.objects.select_related("participant__campaign__organization").get(
            pk=email_id
        )
        participant = email.participant
        if participant.status in (Participant.Status.DECLINED, Participant.Status.COMPLETED):
            CampaignEmail.objects.filter(pk=email_id).update(
                status=CampaignEmail.Status.FAILED, error=f"participant {participant.status}"
            )
            return
        # A fresh link for every email: only its hash is stored.
        token = services.link_issue(participant=participant)
        message = campaign_message(email, participant, token)
    # 2. Send, outside any transaction.
    try:
        message.send()
    except PERMANENT as exc:
        with org_context(org_id):
            _bounce(email, participant, str(exc))
        return
    except (smtplib.SMTPException, OSError) as exc:
        with org_context(org_id):
            CampaignEmail.objects.filter(pk=email_id).update(
                status=CampaignEmail.Status.PENDING,
                attempts=email.attempts + 1,
                error=f"{type(exc).__name__}: {exc}"[:500],
            )
        raise TransientEmailError(f"SMTP failed, will retry: {exc}") from exc
    # 3. Record it.
    with org_context(org_id):
        CampaignEmail.objects.filter(pk=email_id).update(
            status=CampaignEmail.Status.SENT, sent_at=timezone.now(), attempts=email.attempts + 1
        )


def campaign_message(email: CampaignEmail, participant: Participant, token: str):
    campaign = participant.campaign
    org = campaign.organization
    link = reverse("participant:link", args=[token])
    decline = reverse("participant:decline", args=[token])
    message = build_email(
        f"campaign-{email.kind}",
        to=participant.email,
        from_name=org.name,
        context={
            "participant": participant,
            "campaign": campaign,
            "org": org,
            "path": link,
            "decline_path": decline,
            "sequence": email.sequence,
        },
    )
    from django.conf import settings  # noqa: PLC0415

    message.extra_headers.update(
        {
            "List-Unsubscribe": f"<{settings.TAP_BASE_URL}{decline}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "X-Tap-Email": str(email.pk),
        }
    )
    return message


def _bounce(email, participant, reason: str) -> None:
    CampaignEmail.objects.filter(pk=email.pk).update(
        status=CampaignEmail.Status.BOUNCED, error=reason[:500]
    )
    Participant.objects.filter(pk=participant.pk).update(
        status=Participant.Status.BOUNCED, bounce_reason=reason[:500]
    )


@outbox_task(queue="ai", name="campaigns.summarise_mission")
def summarise_mission(*, campaign_id: str, mission: str) -> None:
    if not Campaign.objects.filter(
        pk=campaign_id, mission=mission, mission_summary_edited=False
    ).exists():
        return  # edited by a person, or the mission changed again: a newer job will run
    summary = get_backend().summarise_mission(mission)
    services.mission_summary_store(campaign_id=campaign_id, mission=mission, summary=summary)


@shared_task(name="campaigns.sweep", ignore_result=True)
def sweep() -> dict:
    """Beat: for each organisation with live campaigns, queue due reminders and complete
    campaigns past their close date — one top-level transaction per organisation."""
    org_ids = (
        Campaign.all_objects.using("service")
        .filter(status__in=["active", "paused"])
        .values_list("organization_id", flat=True)
        .distinct()
    )
    totals = {"reminders": 0, "closed": 0}
    for org_id in list(org_ids):
        with org_context(org_id):
            totals["closed"] += services.campaigns_close_due()
            totals["reminders"] += services.reminders_queue_due()
    return totals
