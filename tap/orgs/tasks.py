"""Email side effects of accounts and organisations (queued through the outbox), and the
transcript retention sweep (beat)."""

import logging

from celery import shared_task
from django.contrib.auth.tokens import default_token_generator
from django.urls import reverse
from django.utils import timezone
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from tap import outbox
from tap.emails import build_email, send_email
from tap.orgs import services
from tap.orgs.models import Invitation, Organization, User
from tap.orgs.services import invitation_token
from tap.outbox import outbox_task
from tap.tenancy import current_org_id, org_context

FAILED = Invitation.EmailStatus.FAILED


@outbox_task(queue="email", name="orgs.send_member_invitation", atomic=False)
def send_member_invitation(*, invitation_id: str) -> None:
    org_id = current_org_id()
    # 1. Claim and commit (pending → sending): a second delivery of this job sends nothing.
    with org_context(org_id):
        claimed = Invitation.objects.filter(
            pk=invitation_id,
            email_status=Invitation.EmailStatus.PENDING,
            accepted_at=None,
            revoked_at=None,
        ).update(email_status=Invitation.EmailStatus.SENDING, updated_at=timezone.now())
        if not claimed:
            _give_up_if_interrupted(invitation_id)
            return
        invitation = Invitation.objects.select_related("organization", "invited_by").get(
            pk=invitation_id
        )
        path = reverse("orgs:invitation", args=[invitation_token(invitation)])
        message = build_email(
            "member-invitation",
            to=invitation.email,
            context={"invitation": invitation, "org": invitation.organization, "path": path},
            from_name=f"{invitation.organization.name} on Tap",
        )
    # 2. Send with no transaction open (no row stays locked while SMTP talks).
    try:
        message.send()
    except Exception:
        # Give it back for the outbox's retry; after the last attempt it says failed (the
        # members page offers to invite again) instead of pending for ever.
        status = FAILED if outbox.is_last_attempt() else Invitation.EmailStatus.PENDING
        with org_context(org_id):
            Invitation.objects.filter(pk=invitation_id).update(
                email_status=status, updated_at=timezone.now()
            )
        raise
    # 3. Record it.
    with org_context(org_id):
        Invitation.objects.filter(pk=invitation_id).update(email_status=Invitation.EmailStatus.SENT)


def _give_up_if_interrupted(invitation_id: str) -> None:
    """`sending` for longer than a job's lease: the worker died talking to the SMTP server,
    and whether the email left is unknown. Say failed (so an owner can invite again) rather
    than `sending` for ever; sending again here could send it twice."""
    stale = timezone.now() - outbox.lease_for("email")
    Invitation.objects.filter(
        pk=invitation_id, email_status=Invitation.EmailStatus.SENDING, updated_at__lt=stale
    ).update(email_status=FAILED, updated_at=timezone.now())


@outbox_task(queue="email", name="orgs.send_password_reset", tenant=False)
def send_password_reset(*, user_id: str) -> None:
    user = User.objects.filter(pk=user_id, is_active=True).first()
    if user is None or not user.has_usable_password():
        return
    path = reverse(
        "password_reset_confirm",
        kwargs={
            "uidb64": urlsafe_base64_encode(force_bytes(user.pk)),
            "token": default_token_generator.make_token(user),
        },
    )
    send_email("password-reset", to=user.email, context={"user": user, "path": path})


logger = logging.getLogger(__name__)


@shared_task(name="orgs.retention_sweep", ignore_result=True)
def retention_sweep() -> dict:
    """Beat, daily: for every organisation with a transcript retention set, delete the
    transcripts past it (services.transcripts_expire: batches, each audited). One
    organisation's failure is logged and does not hold up the others."""
    due = (
        Organization.objects.using("service")
        .filter(transcript_retention_days__isnull=False)
        .order_by("pk")
        .values_list("pk", "transcript_retention_days")
    )
    totals = {"orgs": 0, "conversations": 0, "failed": 0}
    for org_id, days in list(due):
        try:
            deleted = services.transcripts_expire(org_id=org_id, days=days)
        except Exception:
            logger.exception("retention sweep failed for an organisation", extra={"org": org_id})
            totals["failed"] += 1
            continue
        totals["orgs"] += 1
        totals["conversations"] += deleted
    return totals
