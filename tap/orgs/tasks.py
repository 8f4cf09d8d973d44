"""Email side effects of accounts and organisations (queued through the outbox)."""

from django.contrib.auth.tokens import default_token_generator
from django.db import transaction
from django.urls import reverse
from django.utils.encoding import force_bytes
from django.utils.http import urlsafe_base64_encode

from tap.emails import send_email
from tap.orgs.models import Invitation, User
from tap.orgs.services import invitation_token
from tap.outbox import outbox_task


@outbox_task(queue="email", name="orgs.send_member_invitation")
def send_member_invitation(*, invitation_id: str) -> None:
    # pending → sending → sent: a second delivery of this job finds it claimed and sends nothing.
    with transaction.atomic():
        claimed = Invitation.objects.filter(
            pk=invitation_id,
            email_status=Invitation.EmailStatus.PENDING,
            accepted_at=None,
            revoked_at=None,
        ).update(email_status=Invitation.EmailStatus.SENDING)
    if not claimed:
        return
    invitation = Invitation.objects.select_related("organization", "invited_by").get(
        pk=invitation_id
    )
    path = reverse("orgs:invitation", args=[invitation_token(invitation)])
    send_email(
        "member-invitation",
        to=invitation.email,
        context={"invitation": invitation, "org": invitation.organization, "path": path},
        from_name=f"{invitation.organization.name} on Tap",
    )
    Invitation.objects.filter(pk=invitation_id).update(email_status=Invitation.EmailStatus.SENT)


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
