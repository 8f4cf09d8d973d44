"""Campaign side effects: invitation and reminder emails, mission summaries, the sweeper."""

from __future__ import annotations

import logging
import smtplib

from celery import shared_task
from django.conf import settings
from django.db.models import F
from django.urls import reverse
from django.utils import timezone

from campaigns import services
from campaigns.models import Campaign, CampaignEmail, Participant
from tap import outbox
from tap.ai import get_backend
from tap.emails import build_email
from tap.orgs.services import audit
from tap.outbox import outbox_task
from tap.tenancy import current_org_id, org_context, org_ids_of

logger = logging.getLogger(__name__)

E = CampaignEmail.Status
# Who gets no email at all, whatever was queued before: they said no, they are done, or
# their address does not exist (a resend puts a bounced participant back to invited).
NOT_EMAILED = (
    Participant.Status.DECLINED,
    Participant.Status.COMPLETED,
    Participant.Status.BOUNCED,
)
CLOSED = (Campaign.Status.COMPLETED, Campaign.Status.ARCHIVED)


class TransientEmailError(RuntimeError):
    """The SMTP server is down or busy: the outbox retries the job with back-off."""


def is_permanent(exc: Exception) -> bool:
    """A 5xx answer about this message or recipient: retrying cannot help, the address
    bounced. 4xx answers (greylisting, a full mailbox, a busy server), connection errors and
    refusals of *our* sender or credentials are transient or ours to fix, never a bounce."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _message in exc.recipients.values()]
        return bool(codes) and all(code >= 500 for code in codes)
    if isinstance(exc, smtplib.SMTPDataError):
        return exc.smtp_code >= 500
    return False


@outbox_task(queue="email", name="campaigns.send_campaign_email", atomic=False)
def send_campaign_email(*, email_id: str) -> None:
    """Send one CampaignEmail row, exactly once: pending → sending → sent (or bounced)."""
    org_id = current_org_id()
    # 1. Claim the row and commit: a second run of this job, or a second job for the same
    #    row, finds it claimed and sends nothing.
    with org_context(org_id):
        claimed = CampaignEmail.objects.filter(pk=email_id, status=E.PENDING).update(
            status=E.SENDING, attempts=F("attempts") + 1, updated_at=timezone.now()
        )
        if not claimed:
            _give_up_if_interrupted(email_id)
            return
        email = CampaignEmail.objects.select_related("participant__campaign__organization").get(
            pk=email_id
        )
        participant = email.participant
        if participant.campaign.status == Campaign.Status.PAUSED:
            # Held, not dropped: back to pending, and resuming the campaign queues it again
            # (services.campaign_transition).
            CampaignEmail.objects.filter(pk=email_id).update(
                status=E.PENDING, error=services.HELD_WHILE_PAUSED, updated_at=timezone.now()
            )
            return
        reason = _reason_not_to_send(participant)
        if reason:
            CampaignEmail.objects.filter(pk=email_id).update(
                status=E.FAILED, error=reason, updated_at=timezone.now()
            )
            return
        # A fresh link for every email: only its hash is stored (links.py).
        token = services.link_issue(participant=participant)
        message = campaign_message(email, participant, token)
    # 2. Talk to the SMTP server outside any transaction: it can take seconds.
    try:
        message.send()
    except (smtplib.SMTPException, OSError) as exc:
        error = f"{type(exc).__name__}: {exc}"[:500]
        with org_context(org_id):
            if is_permanent(exc):
                _bounce(email, participant, error)
                return
            # Back to pending so the retry can claim it; after the last attempt it stays
            # failed, visible on the campaign, instead of pending for ever.
            last = outbox.is_last_attempt()
            CampaignEmail.objects.filter(pk=email_id).update(
                status=E.FAILED if last else E.PENDING, error=error, updated_at=timezone.now()
            )
        raise TransientEmailError(f"SMTP failed, will retry: {error}") from exc
    # 3. Record it.
    with org_context(org_id):
        CampaignEmail.objects.filter(pk=email_id).update(
            status=E.SENT, sent_at=timezone.now(), error="", updated_at=timezone.now()
        )


def _reason_not_to_send(participant: Participant) -> str:
    if participant.status in NOT_EMAILED:
        return f"participant {participant.status}"
    if participant.campaign.status in CLOSED:
        return f"campaign {participant.campaign.status}"
    return ""


def _give_up_if_interrupted(email_id: str) -> None:
    """A row left `sending` longer than a job's lease belongs to a worker that died during
    the SMTP conversation: whether it was delivered is unknown. Sending again could send it
    twice, so say so on the row instead of leaving it `sending` for ever."""
    stale = timezone.now() - outbox.lease_for("email")
    CampaignEmail.objects.filter(pk=email_id, status=E.SENDING, updated_at__lt=stale).update(
        status=E.FAILED,
        error="interrupted while sending; it may or may not have been delivered",
        updated_at=timezone.now(),
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
    message.extra_headers.update(
        {
            # RFC 8058 one-click unsubscribe: the provider POSTs to the decline URL.
            "List-Unsubscribe": f"<{settings.TAP_BASE_URL}{decline}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
            "X-Tap-Email": str(email.pk),
        }
    )
    return message


def _bounce(email: CampaignEmail, participant: Participant, reason: str) -> None:
    """The address does not exist: no further email goes to it (until a resend)."""
    now = timezone.now()
    CampaignEmail.objects.filter(pk=email.pk).update(status=E.BOUNCED, error=reason, updated_at=now)
    Participant.objects.filter(pk=participant.pk).update(
        status=Participant.Status.BOUNCED, bounce_reason=reason, updated_at=now
    )
    audit(
        org_id=participant.organization_id,
        actor=None,
        action="participant.bounced",
        target=participant,
        email=participant.email,
        reason=reason,
    )


@outbox_task(queue="ai", name="campaigns.summarise_mission", atomic=False)
def summarise_mission(*, campaign_id: str, mission: str) -> None:
    org_id = current_org_id()
    with org_context(org_id):
        wanted = Campaign.objects.filter(
            pk=campaign_id, mission=mission, mission_summary_edited=False
        ).exists()
    if not wanted:
        return  # edited by a person, or the mission changed again: a newer job will run
    # The AI call runs outside any transaction; the store re-checks both conditions.
    summary = get_backend().summarise_mission(mission)
    with org_context(org_id):
        services.mission_summary_store(campaign_id=campaign_id, mission=mission, summary=summary)


@shared_task(name="campaigns.sweep", ignore_result=True)
def sweep() -> dict:
    """Beat: for each organisation with live campaigns, queue due reminders and complete
    campaigns past their close date — one top-level transaction per organisation, and one
    organisation's failure does not hold up the others."""
    org_ids = org_ids_of(
        Campaign.all_objects.using("service").filter(
            status__in=[Campaign.Status.ACTIVE, Campaign.Status.PAUSED]
        )
    )
    totals = {"reminders": 0, "closed": 0}
    for org_id in org_ids:
        try:
            with org_context(org_id):
                closed = services.campaigns_close_due()
                reminders = services.reminders_queue_due()
        except Exception:
            logger.exception("campaign sweep failed for an organisation", extra={"org": org_id})
            continue
        totals["closed"] += closed
        totals["reminders"] += reminders
    return totals
