"""Tenancy core: the current organisation, in Python and in PostgreSQL, and nowhere else.

Two settings travel with every transaction, set with `set_config(…, true)` — transaction-local,
so they die with the transaction and can never leak to the next request on a reused connection:

    tap.org_id   the organisation whose rows are visible (RLS policies compare against it)
    tap.user_id  the logged-in user (lets a user see their own memberships and organisations)

In Python the same values live in contextvars, read by `TenantManager` (the ORM filter on
`organization_id`, which raises when no organisation is set) and by the log filter.

Entry points:
  * `TenancyMiddleware` wraps every request in a transaction it owns and activates the org
    named by the URL's `org_slug` after checking membership (404 for non-members).
  * `org_context(org_id)` for tasks, commands and tests.
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from contextvars import ContextVar

from django.db import connections, models, transaction
from django.http import Http404

_org_id: ContextVar[uuid.UUID | None] = ContextVar("tap_org_id", default=None)
_user_id: ContextVar[uuid.UUID | None] = ContextVar("tap_user_id", default=None)
_staff: ContextVar[bool] = ContextVar("tap_staff", default=False)


class TenantContextMissing(RuntimeError):
    """A tenant query ran with no organisation set: a bug, never a 'show everything'."""


def current_org_id() -> uuid.UUID | None:
    return _org_id.get()


def require_org_id() -> uuid.UUID:
    org_id = _org_id.get()
    if org_id is None:
        raise TenantContextMissing(
            "No organisation is active. Use org_context(org_id) or an org-scoped URL."
        )
    return org_id


def _write_settings(using: str, org_id, user_id) -> None:
    connection = connections[using]
    if not connection.in_atomic_block:
        # In autocommit a transaction-local setting dies with its own statement.
        raise TenantContextMissing("The tenant context must be set inside a transaction.")
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT set_config('tap.org_id', %s, true), set_config('tap.user_id', %s, true)",
            [str(org_id) if org_id else "", str(user_id) if user_id else ""],
        )


@contextmanager
def org_context(org_id, *, user_id=None, using: str = "default"):
    """Run the block as organisation `org_id` (and optionally user `user_id`).

    Opens a transaction (or a savepoint inside one) and restores the previous context on the
    way out: a savepoint is not a tenant boundary by itself, so we put the old values back
    explicitly; on an exception, rolling back the savepoint reverts them.
    """
    org_id = uuid.UUID(str(org_id)) if org_id else None
    previous = (_org_id.get(), _user_id.get())
    user_id = user_id if user_id is not None else previous[1]
    # A fresh transaction starts with both settings unset, which is what (None, None) means:
    # skip the round trip when nothing changes (anonymous pages, /ping). Compare with what the
    # database holds, not with the contextvars: under `org_scope` they name an organisation
    # that no transaction has been told about yet.
    fresh = not connections[using].in_atomic_block
    changed = (org_id, user_id) != ((None, None) if fresh else previous)
    with transaction.atomic(using=using):
        if changed:
            _write_settings(using, org_id, user_id)
        org_token, user_token = _org_id.set(org_id), _user_id.set(user_id)
        failed = True
        try:
            yield
            failed = False
        finally:
            _org_id.reset(org_token)
            _user_id.reset(user_token)
            # A transaction this block opened ends here, taking its settings with it.
            if changed and not fresh and not failed and not connections[using].needs_rollback:
                _write_settings(using, *previous)


@contextmanager
def org_scope(org_id):
    """Make `org_id` current in Python only, with no transaction: code inside opens its own
    with `org_context(current_org_id())` (several commits in one task)."""
    token = _org_id.set(uuid.UUID(str(org_id)))
    try:
        yield
    finally:
        _org_id.reset(token)


def activate_org(org_id, *, using: str = "default") -> None:
    """Switch the current transaction to `org_id`; the caller's scope restores it later."""
    _write_settings(using, org_id, _user_id.get())
    _org_id.set(uuid.UUID(str(org_id)))


@contextmanager
def staff_scope():
    """Staff in the Django admin, across organisations: tenant managers stop filtering and
    every query goes to the BYPASSRLS `service` connection (`StaffRouter`). Entered only by
    the admin site, after its staff check (tap/admin.py)."""
    token = _staff.set(True)
    try:
        yield
    finally:
        _staff.reset(token)


def in_staff_scope() -> bool:
    return _staff.get()


class StaffRouter:
    """Inside `staff_scope` reads and writes use the `service` connection: Django's admin
    loads related rows and checks uniqueness through default managers, which on the app role
    would see no organisation's rows. Outside it, no opinion (the `default` connection)."""

    def db_for_read(self, model, **hints):
        return "service" if _staff.get() else None

    db_for_write = db_for_read

    def allow_relation(self, obj1, obj2, **hints):
        # Every alias is the same database under another role: a row read earlier in the
        # request on `default` (the staff user) may be linked to one read on `service`.
        return True if _staff.get() else None


def org_ids_of(queryset) -> list[uuid.UUID]:
    """The organisations a (service connection) queryset's rows belong to, each once: for
    beat tasks that go organisation by organisation. Without `order_by()` a model's default
    ordering joins the DISTINCT, naming an organisation once per row."""
    return list(queryset.order_by().values_list("organization_id", flat=True).distinct())


class TenantQuerySet(models.QuerySet):
    pass


class TenantManager(models.Manager.from_queryset(TenantQuerySet)):
    """The default manager of every tenant model: only the active organisation's rows."""

    def get_queryset(self):
        if _staff.get():
            return super().get_queryset()
        return super().get_queryset().filter(organization_id=require_org_id())


class TenancyMiddleware:
    """Owns the request's transaction; resolves `org_slug` into `request.org`.

    ATOMIC_REQUESTS alone would wrap only the view, leaving middleware and template
    rendering outside the transaction (and so outside the tenant context). This wraps all of
    it; ATOMIC_REQUESTS stays on, making the view a savepoint within, so a view that raises is
    rolled back while its error page still renders inside the tenant context.
    """

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        user = getattr(request, "user", None)
        user_id = user.pk if user is not None and user.is_authenticated else None
        with org_context(None, user_id=user_id):
            response = self.get_response(request)
            if response.status_code >= 500:
                transaction.set_rollback(True)
            return response

    def process_view(self, request, view_func, view_args, view_kwargs):
        slug = view_kwargs.get("org_slug")
        if slug is None:
            return None
        from django.contrib.auth.views import redirect_to_login  # noqa: PLC0415

        from tap.orgs.selectors import membership_for  # noqa: PLC0415 - app loading order

        if not request.user.is_authenticated:
            return redirect_to_login(request.get_full_path())

        membership = membership_for(user=request.user, org_slug=slug)
        if membership is None:
            # Same answer for "does not exist" and "not yours".
            raise Http404("No such organisation.")
        activate_org(membership.organization_id)
        request.org = membership.organization
        request.membership = membership
        return None
