"""Who may do what in an organisation: the one permission authority (django-rules).

owner  — everything, including members, settings and deleting the organisation
admin  — manage campaigns and metrics, see the activity log
member — view only
"""

import rules

from tap.orgs.models import ROLE_RANK, Role


def role_of(user, org) -> str | None:
    """The user's role in `org`, cached on the org object for the request."""
    if not user.is_authenticated or org is None:
        return None
    cache = org.__dict__.setdefault("_roles", {})
    if user.pk not in cache:
        from tap.orgs.selectors import member_role  # noqa: PLC0415

        cache[user.pk] = member_role(user=user, org=org)
    return cache[user.pk]


def _at_least(role: str):
    def check(user, org) -> bool:
        actual = role_of(user, org)
        return actual is not None and ROLE_RANK[actual] >= ROLE_RANK[role]

    check.__name__ = f"is_org_{role}"
    return rules.predicate(check)


is_org_member = _at_least(Role.MEMBER)
is_org_admin = _at_least(Role.ADMIN)
is_org_owner = _at_least(Role.OWNER)

rules.add_perm("orgs.view_org", is_org_member)
rules.add_perm("orgs.leave_org", is_org_member)
rules.add_perm("orgs.view_activity", is_org_admin)
rules.add_perm("orgs.manage_members", is_org_owner)
rules.add_perm("orgs.change_org", is_org_owner)
rules.add_perm("orgs.delete_org", is_org_owner)
rules.add_perm("orgs.export_org", is_org_owner)
