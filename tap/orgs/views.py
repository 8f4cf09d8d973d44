from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.decorators import login_required
from django.contrib.auth.forms import PasswordResetForm
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse, reverse_lazy
from django.utils import timezone
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_http_methods, require_safe

from campaigns import selectors as campaign_selectors
from tap import ratelimit
from tap.orgs import export, selectors, services
from tap.orgs.decorators import org_view
from tap.orgs.forms import (
    DeleteOrgForm,
    InviteForm,
    LoginForm,
    OrganizationForm,
    RetentionForm,
    RoleForm,
    SignupForm,
)
from tap.orgs.models import Invitation, OrganizationMember, Role
from tap.tenancy import org_context


def apply_errors(form, exc: ValidationError) -> None:
    """Show a service's ValidationError on the form (field errors where the field exists)."""
    if hasattr(exc, "error_dict"):
        for field, errors in exc.error_dict.items():
            form.add_error(field if field in form.fields else None, errors)
    else:
        form.add_error(None, exc)


def safe_next(request, default: str) -> str:
    target = request.POST.get("next") or request.GET.get("next") or ""
    if url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        return target
    return default


def too_many_requests(request, retry_after: int) -> HttpResponse:
    response = render(request, "429.html", {"retry_after": retry_after}, status=429)
    response["Retry-After"] = str(retry_after)
    return response


# --- accounts ------------------------------------------------------------------------------


class LoginView(auth_views.LoginView):
    """Django's login view, rate-limited per client and per (client, email)."""

    form_class = LoginForm
    redirect_authenticated_user = True

    def post(self, request, *args, **kwargs):
        ip = ratelimit.client_ip(request)
        email = (request.POST.get("username") or "").strip().lower()
        for scope, key, spec in (
            ("login-ip", ip, settings.TAP_LOGIN_RATE_PER_IP),
            ("login", f"{ip}:{email}", settings.TAP_LOGIN_RATE),
        ):
            wait = ratelimit.hit(scope, key, ratelimit.Limit.parse(spec))
            if wait:
                return too_many_requests(request, wait)
        # Failures per account, from any address: checked first, counted after a miss.
        account = ratelimit.Limit.parse(settings.TAP_LOGIN_FAILURES_PER_ACCOUNT)
        if email and (wait := ratelimit.blocked("login-account", email, account)):
            return too_many_requests(request, wait)
        response = super().post(request, *args, **kwargs)
        if email and not request.user.is_authenticated:
            ratelimit.hit("login-account", email, account)
        return response


class OutboxPasswordResetForm(PasswordResetForm):
    """Queues the reset email through the outbox instead of sending it in the request."""

    def save(self, *args, **kwargs):
        services.password_reset_request(email=self.cleaned_data["email"])


class PasswordResetView(auth_views.PasswordResetView):
    form_class = OutboxPasswordResetForm

    def post(self, request, *args, **kwargs):
        wait = ratelimit.hit(
            "password-reset", ratelimit.client_ip(request), ratelimit.Limit.parse("10/3600")
        )
        if wait:
            return too_many_requests(request, wait)
        return super().post(request, *args, **kwargs)


class LogoutView(auth_views.LogoutView):
    """Django's logout. From an invitation opened while logged in with another account, the
    invitation survives it: the person goes on to log in (or sign up) with the invited
    address instead of hunting for the email again."""

    def post(self, request, *args, **kwargs):
        token = request.session.get(INVITATION_SESSION_KEY, "")
        keep = request.POST.get("keep_invitation") == "1" and token
        response = super().post(request, *args, **kwargs)
        if keep:
            request.session[INVITATION_SESSION_KEY] = token
            return redirect("orgs:invitation_accept")
        return response


@require_http_methods(["GET", "POST"])
def signup(request):
    if request.user.is_authenticated:
        return redirect("home")
    next_url = safe_next(request, reverse("orgs:create"))
    if request.method == "POST":
        limit = ratelimit.Limit.parse(settings.TAP_SIGNUP_RATE)
        wait = ratelimit.hit("signup", ratelimit.client_ip(request), limit)
        if wait:
            return too_many_requests(request, wait)
    form = SignupForm(request.POST or None, initial={"email": request.GET.get("email", "")})
    if request.method == "POST" and form.is_valid():
        try:
            user = services.user_signup(
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password1"],
                name=form.cleaned_data["name"],
            )
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(request, "Welcome to Tap.")
            return redirect(next_url)
    return render(request, "registration/signup.html", {"form": form, "next": next_url})


@login_required
def home(request):
    orgs = selectors.orgs_for_user(user=request.user)
    if len(orgs) == 1:
        return redirect("orgs:dashboard", org_slug=orgs[0].slug)
    return render(request, "orgs/org_list.html", {"orgs": orgs})


@login_required
@require_http_methods(["GET", "POST"])
def org_create(request):
    form = OrganizationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            org = services.org_create(
                actor=request.user,
                name=form.cleaned_data["name"],
                once_within=services.ORG_CREATE_AGAIN_AFTER,  # a second click: the same one
            )
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            messages.success(request, f"{org.name} is ready. Invite your colleagues.")
            return redirect("orgs:dashboard", org_slug=org.slug)
    return render(request, "orgs/org_create.html", {"form": form})


# --- organisation pages --------------------------------------------------------------------


@org_view("orgs.view_org")
def dashboard(request):
    return render(
        request,
        "orgs/dashboard.html",
        {
            "summary": selectors.org_summary(org=request.org),
            "campaigns": campaign_selectors.recent_campaigns(org=request.org, limit=5),
            "activity": selectors.recent_activity(org=request.org, limit=8)
            if request.user.has_perm("orgs.view_activity", request.org)
            else None,
        },
    )


@org_view("orgs.change_org", methods=("GET", "POST"))
def org_settings(request):
    form = OrganizationForm(request.POST or None, initial={"name": request.org.name})
    if request.method == "POST" and form.is_valid():
        try:
            services.org_update(actor=request.user, org=request.org, name=form.cleaned_data["name"])
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            messages.success(request, "Settings saved.")
            return redirect("orgs:settings", org_slug=request.org.slug)
    return render(
        request,
        "orgs/settings.html",
        {
            "form": form,
            "retention_form": RetentionForm(
                initial={"transcript_retention_days": request.org.transcript_retention_days}
            ),
        },
    )


@org_view("orgs.delete_org", methods=("GET", "POST"))
def org_delete(request):
    form = DeleteOrgForm(request.POST or None, org=request.org)
    if request.method == "POST" and form.is_valid():
        name = request.org.name
        services.org_delete(actor=request.user, org=request.org)
        messages.success(request, f"{name} and everything in it was deleted.")
        return redirect("home")
    return render(request, "orgs/delete.html", {"form": form})


@org_view("orgs.view_org")
def members(request):
    return _members_page(request)


def _members_page(request, invite_form: InviteForm | None = None):
    """The member list; `invite_form`: an invitation that was refused, shown with its errors
    and what was typed."""
    can_manage = request.user.has_perm("orgs.manage_members", request.org)
    members_list = selectors.org_members(org=request.org)
    owners = sum(1 for m in members_list if m.role == Role.OWNER)
    return render(
        request,
        "orgs/members.html",
        {
            "members": members_list,
            "sole_owner": request.membership.role == Role.OWNER and owners == 1,
            "invitations": selectors.open_invitations(org=request.org) if can_manage else [],
            "invite_form": (invite_form or InviteForm()) if can_manage else None,
            "roles": Role.choices,
            "can_manage": can_manage,
        },
    )


@org_view("orgs.view_org", write_perm="orgs.manage_members", methods=("POST",))
def member_invite(request):
    form = InviteForm(request.POST)
    if form.is_valid():
        try:
            invitation, sent = services.member_invite(
                actor=request.user,
                org=request.org,
                email=form.cleaned_data["email"],
                role=form.cleaned_data["role"],
            )
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            if sent:
                messages.success(request, f"Invitation sent to {invitation.email}.")
            else:
                messages.info(
                    request,
                    f"An invitation went to {invitation.email} a moment ago; it was not sent "
                    "again. Invite them again in a minute for a fresh one.",
                )
            return redirect("orgs:members", org_slug=request.org.slug)
    # Refused: the page again, with the reason beside the field and what was typed in it.
    return _members_page(request, form)


@org_view("orgs.view_org", write_perm="orgs.manage_members", methods=("POST",))
def member_role(request, member_id):
    member = get_object_or_404(OrganizationMember.objects.select_related("user"), pk=member_id)
    form = RoleForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Choose a valid role.")
    else:
        try:
            services.member_change_role(
                actor=request.user, org=request.org, member=member, role=form.cleaned_data["role"]
            )
        except ValidationError as exc:
            messages.error(request, " ".join(exc.messages))
        else:
            messages.success(request, f"{member.user.email} is now {form.cleaned_data['role']}.")
    return redirect("orgs:members", org_slug=request.org.slug)


@org_view("orgs.view_org", write_perm="orgs.manage_members", methods=("POST",))
def member_remove(request, member_id):
    member = OrganizationMember.objects.select_related("user").filter(pk=member_id).first()
    try:
        removed = member is not None and services.member_remove(
            actor=request.user, org=request.org, member=member
        )
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
    else:
        if removed:
            messages.success(request, f"{member.user.email} was removed.")
        else:  # a second click, or another owner was quicker
            messages.info(request, "That person is no longer a member.")
    return redirect("orgs:members", org_slug=request.org.slug)


@org_view("orgs.view_org", write_perm="orgs.manage_members", methods=("POST",))
def invitation_revoke(request, invitation_id):
    invitation = get_object_or_404(Invitation.objects.all(), pk=invitation_id)
    try:
        services.invitation_revoke(actor=request.user, org=request.org, invitation=invitation)
    except ValidationError as exc:
        messages.info(request, " ".join(exc.messages))
    else:
        messages.success(request, f"The invitation for {invitation.email} was revoked.")
    return redirect("orgs:members", org_slug=request.org.slug)


@org_view("orgs.leave_org", methods=("POST",))
def org_leave(request):
    try:
        services.org_leave(actor=request.user, org=request.org)
    except ValidationError as exc:
        messages.error(request, " ".join(exc.messages))
        return redirect("orgs:members", org_slug=request.org.slug)
    messages.success(request, f"You left {request.org.name}.")
    return redirect("home")


@org_view("orgs.view_activity")
def activity(request):
    return render(
        request, "orgs/activity.html", {"events": selectors.recent_activity(org=request.org)}
    )


# --- invitations ---------------------------------------------------------------------------


INVITATION_SESSION_KEY = "tap_member_invitation"


@require_safe
def invitation(request, token):
    """The emailed link. Its signed token (naming the invitation and its org) is exchanged
    for the session and the browser goes on to a URL without it, so the token leaves the
    address bar, history, Referer headers and `next` parameters."""
    if services.invitation_ids_from_token(token) is None:
        raise Http404("No such invitation.")
    request.session[INVITATION_SESSION_KEY] = token
    return redirect("orgs:invitation_accept")


@require_http_methods(["GET", "POST"])
def invitation_accept(request):
    token = request.session.get(INVITATION_SESSION_KEY, "")
    ids = services.invitation_ids_from_token(token)
    if ids is None:
        raise Http404("No such invitation.")
    invitation_id, org_id = ids
    with org_context(org_id):
        invitation = (
            Invitation.objects.select_related("organization", "invited_by")
            .filter(pk=invitation_id)
            .first()
        )
        if invitation is None:
            raise Http404("No such invitation.")
        accepted_by_me = (
            invitation.accepted_at is not None
            and request.user.is_authenticated
            and invitation.accepted_by_id == request.user.pk
        )
        if request.method == "GET" and accepted_by_me:
            # The emailed link, opened again by the one who joined: to the organisation.
            return redirect("orgs:dashboard", org_slug=invitation.organization.slug)
        if request.method == "POST" and request.user.is_authenticated:
            try:
                services.invitation_accept(user=request.user, invitation=invitation)
            except ValidationError as exc:
                messages.error(request, " ".join(exc.messages))
            else:
                # The token stays in the session: a second click on "Join" (its invitation
                # now used, by this user) lands on the organisation too, not on a 404.
                messages.success(request, f"Welcome to {invitation.organization.name}.")
                return redirect("orgs:dashboard", org_slug=invitation.organization.slug)
        return render(
            request,
            "orgs/invitation.html",
            {
                "invitation": invitation,
                "here": reverse("orgs:invitation_accept"),
                "signup_url": reverse("signup"),
                "login_url": reverse_lazy("login"),
                "org_url": reverse("orgs:dashboard", args=[invitation.organization.slug]),
            },
        )


@org_view("orgs.change_org", methods=("POST",))
def org_retention(request):
    form = RetentionForm(request.POST)
    if form.is_valid():
        try:
            services.org_set_retention(
                actor=request.user,
                org=request.org,
                days=form.cleaned_data["transcript_retention_days"],
            )
        except ValidationError as exc:
            apply_errors(form, exc)
        else:
            days = request.org.transcript_retention_days
            messages.success(
                request,
                f"Transcripts are deleted {days} days after their last message."
                if days
                else "Transcripts are kept until you delete them.",
            )
            return redirect("orgs:settings", org_slug=request.org.slug)
    return render(
        request,
        "orgs/settings.html",
        {"form": OrganizationForm(initial={"name": request.org.name}), "retention_form": form},
    )


@org_view("orgs.export_org", methods=("POST",))
def org_export(request):
    """The whole organisation as one JSON download (tap/orgs/export.py), streamed."""
    chunks = export.org_export(actor=request.user, org=request.org)
    response = StreamingHttpResponse(chunks, content_type="application/json")
    stamp = timezone.now().strftime("%Y%m%d-%H%M")
    response["Content-Disposition"] = (
        f'attachment; filename="{request.org.slug}-export-{stamp}.json"'
    )
    response["Cache-Control"] = "no-store"
    return response
