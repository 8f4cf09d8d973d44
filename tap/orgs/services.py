"""Business actions for accounts and organisations: the only place their state changes.

Each takes the acting user, runs in a transaction, validates, audits, and queues side effects
through the outbox."""

from __future__ import annotations

import secrets
import uuid
from datetime import timedelta

from django.apps import apps
from django.conf import settings
from django.contrib.auth import password_validation
from django.core import signing
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.db.models.functions import Coalesce
from django.utils import timezone
from django.utils.text import slugify

from tap import outbox
from tap.locks import advisory_xact_lock
from tap.orgs.models import (
    AuditEvent,
    Invitation,
    Organization,
    OrganizationMember,
    Role,
    User,
)
from tap.orgs.selectors import orgs_for_user
from tap.tenancy import org_context

INVITATION_SALT = "tap.orgs.invitation"


def audit(*, org_id, actor, action: str, target=None, **data) -> AuditEvent:
    """Record an audit event in the current transaction (and organisation)."""
    event = AuditEvent(
        organization_id=org_id,
        actor=actor if actor is not None and actor.is_authenticated else None,
        action=action,
        target_type=target._meta.label_lower if target is not None else "",
        target_id=str(target.pk) if target is not None else "",
        data=data,
    )
    event.save(force_insert=True)
    return event


# --- accounts ------------------------------------------------------------------------------


def user_signup(*, email: str, password: str, name: str = "") -> User:
    email = User.objects.normalize_email(email.strip()).lower()
    validate_email(email)
    if User.objects.filter(email__iexact=email).exists():
        raise ValidationError({"email": "An account with this email already exists. Log in."})
    user = User(email=email, name=name.strip())
    password_validation.validate_password(password, user)
    user.set_password(password)
    try:
        with transaction.atomic():
            user.save(force_insert=True)
    except IntegrityError as exc:  # a concurrent sign-up with the same address
        raise ValidationError({"email": "An account with this email already exists."}) from exc
    return user


def password_reset_request(*, email: str) -> None:
    """Queue a reset email for each active account with this address (none: silently)."""
    for user in User.objects.filter(email__iexact=email.strip(), is_active=True):
        if user.has_usable_password():
            outbox.enqueue("orgs.send_password_reset", queue="email", user_id=str(user.pk))


# --- organisations -------------------------------------------------------------------------


def _unique_slug_candidates(name: str):
    base = slugify(name)[:50] or "org"
    yield base
    for _ in range(10):
        yield f"{base}-{secrets.token_hex(2)}"


# An organisation its creator made this recently, under the same name, is the answer to
# creating it again: a double click on Create must not make two.
ORG_CREATE_AGAIN_AFTER = timedelta(seconds=30)


def org_create(
    *, actor: User, name: str, slug: str | None = None, once_within: timedelta | None = None
) -> Organization:
    """Create an organisation with `actor` as its owner. `once_within` (the create page:
    ORG_CREATE_AGAIN_AFTER): one they created under this name that recently is the answer
    instead — a second click on Create."""
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Give the organisation a name."})
    org_id = uuid.uuid4()
    candidates = [slug] if slug else _unique_slug_candidates(name)
    with transaction.atomic():
        if once_within is not None:
            # One creation at a time per person: a second request sees the first one's.
            advisory_xact_lock(f"tap.org_create:{actor.pk}")
            since = timezone.now() - once_within
            with org_context(None, user_id=actor.pk):  # their memberships are theirs to read
                mine = orgs_for_user(user=actor)
            for made in mine:
                if made.name == name and made.role == Role.OWNER and made.created_at > since:
                    return made
        with org_context(org_id):
            for candidate in candidates:
                try:
                    with transaction.atomic():
                        org = Organization.objects.create(id=org_id, name=name, slug=candidate)
                    break
                except IntegrityError:
                    continue
            else:
                raise ValidationError(
                    {"name": "Could not find a free web address; try another name."}
                )
            OrganizationMember.objects.create(organization=org, user=actor, role=Role.OWNER)
            audit(org_id=org.id, actor=actor, action="org.created", target=org, name=name)
    return org


def org_update(*, actor: User, org: Organization, name: str) -> Organization:
    name = name.strip()
    if not name:
        raise ValidationError({"name": "Give the organisation a name."})
    with transaction.atomic():
        old = org.name
        org.name = name
        org.save(update_fields=["name", "updated_at"])
        audit(org_id=org.id, actor=actor, action="org.renamed", target=org, old=old, new=name)
    return org


def org_delete(*, actor: User, org: Organization) -> None:
    """Delete the organisation and everything in it. Uses the service connection: the app
    role may never delete audit rows, and this is the one action that must."""
    with transaction.atomic(using="service"):
        Organization.objects.using("service").filter(pk=org.pk).delete()


# --- members -------------------------------------------------------------------------------


OWNER_NEEDED = "An organisation needs at least one owner. Make someone else an owner first."


def _lock_owners(org: Organization) -> list[OrganizationMember]:
    """Lock the owner rows so two concurrent demotions cannot leave the org without one."""
    return list(
        OrganizationMember.objects.select_for_update()
        .filter(organization=org, role=Role.OWNER)
        .order_by("id")
    )


def _ensure_owner_remains(org: Organization, member: OrganizationMember, new_role) -> None:
    if member.role != Role.OWNER or new_role == Role.OWNER:
        return
    owners = _lock_owners(org)
    if len(owners) <= 1:
        raise ValidationError(OWNER_NEEDED)


def member_change_role(
    *, actor: User, org: Organization, member: OrganizationMember, role: str
) -> OrganizationMember:
    if role not in Role.values:
        raise ValidationError("Unknown role.")
    with transaction.atomic():
        _lock_owners(org)  # always owners first, then the member: one lock order, no deadlock
        member = OrganizationMember.objects.select_for_update().get(pk=member.pk)
        if member.role == role:
            return member
        _ensure_owner_remains(org, member, role)
        old = member.role
        member.role = role
        member.save(update_fields=["role", "updated_at"])
        audit(
            org_id=org.id,
            actor=actor,
            action="member.role_changed",
            target=member,
            email=member.user.email,
            old=old,
            new=role,
        )
    return member


def member_remove(*, actor: User, org: Organization, member: OrganizationMember) -> bool:
    """False when someone else (or the same click, twice) removed them first."""
    with transaction.atomic():
        _lock_owners(org)
        member = OrganizationMember.objects.select_for_update().filter(pk=member.pk).first()
        if member is None:
            return False
        _ensure_owner_remains(org, member, None)
        email = member.user.email
        member.delete()
        audit(org_id=org.id, actor=actor, action="member.removed", email=email)
    return True


def org_leave(*, actor: User, org: Organization) -> None:
    with transaction.atomic():
        _lock_owners(org)
        member = (
            OrganizationMember.objects.select_for_update()
            .filter(organization=org, user=actor)
            .first()
        )
        if member is None:  # left already (a second click, another tab)
            return
        _ensure_owner_remains(org, member, None)
        member.delete()
        audit(org_id=org.id, actor=actor, action="member.left", email=actor.email)


# --- invitations ---------------------------------------------------------------------------


def invitation_token(invitation: Invitation) -> str:
    """A signed, unstored token naming the invitation (and its org, to set the context)."""
    return signing.dumps(
        {"i": str(invitation.pk), "o": str(invitation.organization_id)},
        salt=INVITATION_SALT,
        compress=True,
    )


def invitation_ids_from_token(token: str) -> tuple[uuid.UUID, uuid.UUID] | None:
    """(invitation id, org id) named by a token; None when it is forged or mangled."""
    try:
        data = signing.loads(token, salt=INVITATION_SALT)
        return uuid.UUID(data["i"]), uuid.UUID(data["o"])
    except (signing.BadSignature, KeyError, ValueError, TypeError):
        return None


# An invitation sent this recently, to the same address with the same role, is the answer to
# inviting again: a double click must not revoke the link the first email carries.
INVITE_AGAIN_AFTER = timedelta(minutes=1)


def member_invite(
    *, actor: User, org: Organization, email: str, role: str
) -> tuple[Invitation, bool]:
    """(invitation, True) with its email queued; (the open one, False) when the same
    invitation went out less than INVITE_AGAIN_AFTER ago."""
    email = User.objects.normalize_email(email.strip()).lower()
    validate_email(email)
    if role not in Role.values:
        raise ValidationError({"role": "Unknown role."})
    with transaction.atomic():
        # Invitations of one address take turns: two requests at once see each other.
        advisory_xact_lock(f"tap.invite:{org.id}:{email}")
        if OrganizationMember.objects.filter(organization=org, user__email__iexact=email).exists():
            raise ValidationError({"email": f"{email} is already a member."})
        recent = (
            Invitation.objects.filter(
                organization=org,
                email__iexact=email,
                role=role,
                accepted_at=None,
                revoked_at=None,
                created_at__gt=timezone.now() - INVITE_AGAIN_AFTER,
            )
            .exclude(email_status=Invitation.EmailStatus.FAILED)
            .first()
        )
        if recent is not None:
            return recent, False
        # Inviting again replaces an open invitation (and sends a fresh email).
        Invitation.objects.filter(
            organization=org, email__iexact=email, accepted_at=None, revoked_at=None
        ).update(revoked_at=timezone.now())
        invitation = Invitation.objects.create(
            organization=org,
            email=email,
            role=role,
            invited_by=actor,
            expires_at=timezone.now() + timedelta(days=settings.TAP_MEMBER_INVITATION_DAYS),
        )
        audit(
            org_id=org.id,
            actor=actor,
            action="member.invited",
            target=invitation,
            email=email,
            role=role,
        )
        outbox.enqueue(
            "orgs.send_member_invitation",
            queue="email",
            org_id=org.id,
            invitation_id=str(invitation.pk),
        )
    return invitation, True


def invitation_revoke(*, actor: User, org: Organization, invitation: Invitation) -> None:
    """Refused, saying why, when the invitation was accepted or revoked already."""
    with transaction.atomic():
        invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if invitation.accepted_at is not None:
            raise ValidationError(
                f"{invitation.email} accepted this invitation already and is a member: "
                "remove them from the member list instead."
            )
        if invitation.revoked_at is not None:
            raise ValidationError(f"The invitation for {invitation.email} was revoked already.")
        invitation.revoked_at = timezone.now()
        invitation.save(update_fields=["revoked_at", "updated_at"])
        audit(
            org_id=org.id,
            actor=actor,
            action="invitation.revoked",
            target=invitation,
            email=invitation.email,
        )


def invitation_accept(*, user: User, invitation: Invitation) -> OrganizationMember:
    """Join the invitation's organisation. Must run inside that org's context."""
    with transaction.atomic():
        invitation = Invitation.objects.select_for_update().get(pk=invitation.pk)
        if invitation.accepted_by_id == user.pk:  # accepted already (a second click): done
            member = OrganizationMember.objects.filter(
                organization_id=invitation.organization_id, user=user
            ).first()
            if member is not None:
                return member
        if not invitation.is_open:
            raise ValidationError("This invitation has expired or was already used.")
        if invitation.email.lower() != user.email.lower():
            raise ValidationError(
                f"This invitation is for {invitation.email}. Log in with that address to accept."
            )
        member, _created = OrganizationMember.objects.get_or_create(
            organization_id=invitation.organization_id,
            user=user,
            defaults={"role": invitation.role},
        )
        invitation.accepted_at = timezone.now()
        invitation.accepted_by = user
        invitation.save(update_fields=["accepted_at", "accepted_by", "updated_at"])
        audit(
            org_id=invitation.organization_id,
            actor=user,
            action="member.joined",
            target=member,
            email=user.email,
            role=member.role,
        )
    return member


# --- retention -----------------------------------------------------------------------------

RETENTION_MAX_DAYS = 3650
RETENTION_BATCH = 1000


def org_set_retention(*, actor: User, org: Organization, days: int | None) -> Organization:
    """Keep transcripts `days` days after their last activity (None: keep them)."""
    if days is not None and not 1 <= days <= RETENTION_MAX_DAYS:
        raise ValidationError(
            {"transcript_retention_days": f"Choose 1 to {RETENTION_MAX_DAYS} days, or leave empty."}
        )
    with transaction.atomic():
        old = org.transcript_retention_days
        if old == days:
            return org
        org.transcript_retention_days = days
        org.save(update_fields=["transcript_retention_days", "updated_at"])
        audit(
            org_id=org.id,
            actor=actor,
            action="org.retention_changed",
            target=org,
            old=old,
            new=days,
        )
    return org


def transcripts_expire(*, org_id, days: int, now=None, batch: int = RETENTION_BATCH) -> int:
    """Delete the organisation's conversations (with their messages) whose last activity is
    older than `days` days, `batch` at a time, each batch its own audited transaction, so a
    large first run never holds a long lock and a failure keeps what was done. Returns the
    number of conversations deleted.

    Conversations are named by label: `tap` imports no domain app (design.md)."""
    conversation_model = apps.get_model("conversations", "Conversation")
    cutoff = (now or timezone.now()) - timedelta(days=days)
    total = 0
    while True:
        with org_context(org_id):
            ids = list(
                conversation_model.objects.alias(last=Coalesce("last_activity_at", "created_at"))
                .filter(last__lt=cutoff)
                .order_by("pk")
                # A conversation someone is posting to right now is left for the next run.
                .select_for_update(skip_locked=True)
                .values_list("pk", flat=True)[:batch]
            )
            if not ids:
                break
            _count, deleted = conversation_model.objects.filter(pk__in=ids).delete()
            audit(
                org_id=org_id,
                actor=None,
                action="transcripts.expired",
                conversations=deleted.get("conversations.Conversation", 0),
                messages=deleted.get("conversations.Message", 0),
                retention_days=days,
                cutoff=cutoff.isoformat(),
            )
        total += len(ids)
        if len(ids) < batch:
            break
    return total
