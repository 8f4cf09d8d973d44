"""The decorator every organisation page goes through.

`TenancyMiddleware` has already turned `/o/<org_slug>/…` into `request.org` (404 for
non-members, login for anonymous users); this checks the permission for the method used."""

from functools import wraps

from django.core.exceptions import PermissionDenied
from django.http import HttpResponseNotAllowed


def org_view(perm: str, *, write_perm: str | None = None, methods=("GET",)):
    """`perm` guards every method; `write_perm`, when given, guards POST as well."""
    methods = tuple(methods)

    def decorator(view):
        @wraps(view)
        def wrapped(request, org_slug, *args, **kwargs):
            if request.method not in methods and not (
                request.method == "HEAD" and "GET" in methods
            ):
                return HttpResponseNotAllowed(methods)
            needed = [perm]
            if write_perm and request.method == "POST":
                needed.append(write_perm)
            for name in needed:
                if not request.user.has_perm(name, request.org):
                    raise PermissionDenied(PERMISSION_MESSAGES.get(name, "Not allowed."))
            return view(request, *args, **kwargs)

        wrapped.tap_permissions = {"read": perm, "write": write_perm, "methods": methods}
        return wrapped

    return decorator


PERMISSION_MESSAGES = {
    "orgs.manage_members": "Only owners of this organisation can manage its members.",
    "orgs.change_org": "Only owners can change the organisation's settings.",
    "orgs.delete_org": "Only owners can delete the organisation.",
    "orgs.export_org": "Only owners can export the organisation's data.",
    "orgs.view_activity": "The activity log is for admins and owners.",
    "campaigns.manage_campaign": "Only admins and owners can run campaigns; members can read them.",
}
