"""Reads for accounts and organisations. Tenant rows are reached only through these or
through the scoped managers."""

from django.db.models import Count, OuterRef, Subquery

from tap.orgs.models import AuditEvent, Invitation, Organization, OrganizationMember


def membership_for(*, user, org_slug: str) -> OrganizationMember | None:
    """The user's membership in the org with this slug, or None (unknown and not-yours alike).

    Runs before any org is active: RLS shows a user their own memberships only."""
    membership = (
        OrganizationMember.all_objects.select_related("organization")
        .filter(user=user, organization__slug=org_slug)
        .first()
    )
    if membership is not None:
        membership.organization.__dict__["_roles"] = {user.pk: membership.role}
    return membership


def member_role(*, user, org) -> str | None:
    return (
        OrganizationMember.all_objects.filter(user=user, organization=org)
        .values_list("role", flat=True)
        .first()
    )


def orgs_for_user(*, user) -> list[Organization]:
    """The user's organisations, each with `role` and `member_count`, by name."""
    role = OrganizationMember.all_objects.filter(user=user, organization=OuterRef("pk")).values(
        "role"
    )[:1]
    return list(
        Organization.objects.filter(
            pk__in=OrganizationMember.all_objects.filter(user=user).values("organization_id")
        )
        .annotate(role=Subquery(role))
        .order_by("name")
    )


def org_members(*, org) -> list[OrganizationMember]:
    return list(
        OrganizationMember.objects.filter(organization=org)
        .select_related("user")
        .order_by("user__email")
    )


def open_invitations(*, org) -> list[Invitation]:
    from django.utils import timezone  # noqa: PLC0415

    return list(
        Invitation.objects.filter(
            organization=org, accepted_at=None, revoked_at=None, expires_at__gt=timezone.now()
        )
        .select_related("invited_by")
        .order_by("-created_at")
    )


def owner_count(*, org) -> int:
    return OrganizationMember.objects.filter(organization=org, role="owner").count()


def org_summary(*, org) -> dict:
    counts = dict(
        OrganizationMember.objects.filter(organization=org)
        .values_list("role")
        .annotate(n=Count("id"))
        .values_list("role", "n")
    )
    return {"members": sum(counts.values()), "by_role": counts}


def recent_activity(*, org, limit: int = 100) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.filter(organization=org)
        .select_related("actor")
        .order_by("-created_at")[:limit]
    )
