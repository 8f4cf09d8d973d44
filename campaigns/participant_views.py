"""Participant pages under /c/: the emailed link and the one-click decline. The token-free
conversation page the link leads to is the chat, in `conversations.views` (`chat:home`).
Participants have no account: the link is their key, and it is resolved in `campaigns.links`
and nowhere else (reliability.md, "Participant links")."""

from __future__ import annotations

from functools import wraps

from django.conf import settings
from django.http import Http404
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import get_resolver
from django.utils.cache import add_never_cache_headers
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_safe

from campaigns import links, services
from campaigns.models import Participant
from tap import ratelimit
from tap.orgs.views import too_many_requests
from tap.tenancy import org_context

# Unknown tokens per client address: a person mistyping a link gets there in a handful of
# tries; someone guessing is stopped long before 256 bits would matter.
LOOKUP_SCOPE = "participant-link"


class Throttled(Exception):
    def __init__(self, retry_after: int):
        super().__init__(retry_after)
        self.retry_after = retry_after


def lookup_limit() -> ratelimit.Limit:
    """Unknown-token lookups allowed per client (settings.TAP_PARTICIPANT_LINK_RATE)."""
    return ratelimit.Limit.parse(settings.TAP_PARTICIPANT_LINK_RATE)


def participant_page(view):
    """No Referer leaves a participant page and nothing is cached, so the token can end up in
    neither. A 404 raised inside is the project's ordinary 404 page — the same as for any
    unknown URL — with these headers too."""

    @wraps(view)
    def wrapper(request, *args, **kwargs):
        try:
            response = view(request, *args, **kwargs)
        except Http404 as exc:
            response = get_resolver().resolve_error_handler(404)(request, exception=exc)
        except Throttled as exc:
            response = too_many_requests(request, exc.retry_after)
        response["Referrer-Policy"] = "no-referrer"
        add_never_cache_headers(response)
        return response

    return wrapper


def resolve_or_404(request, token: str) -> links.ResolvedLink:
    """The live link a URL token names; unknown, revoked and malformed are one 404. Misses
    are counted per client address, and a client over the limit is not looked up at all."""
    ip = ratelimit.client_ip(request)
    wait = ratelimit.blocked(LOOKUP_SCOPE, ip, lookup_limit())
    if wait:
        raise Throttled(wait)
    resolved = links.resolve_token(token)
    if resolved is None:
        ratelimit.hit(LOOKUP_SCOPE, ip, lookup_limit())
        raise Http404("No such page.")
    return resolved


def link_participant(resolved: links.ResolvedLink, *related: str) -> Participant:
    """The participant a live link names, with its campaign and organisation (and any other
    `related` rows). Inside the link's org context."""
    return get_object_or_404(
        Participant.objects.select_related("campaign__organization", *related),
        pk=resolved.participant_id,
    )


@participant_page
@require_safe
def link(request, token: str):
    """The emailed link: exchange the token for a session and leave the URL that holds it."""
    resolved = resolve_or_404(request, token)
    links.start_session(request, resolved)
    with org_context(resolved.organization_id):
        links.mark_used(resolved)
        services.participant_opened(participant=link_participant(resolved))
    return redirect("chat:home")


# RFC 8058 one-click unsubscribe: mail providers POST here without a CSRF token. The token in
# the URL authenticates the request, and declining is all this endpoint can do.
@csrf_exempt
@participant_page
@require_http_methods(["GET", "HEAD", "POST"])
def decline(request, token: str):
    resolved = resolve_or_404(request, token)
    with org_context(resolved.organization_id):
        participant = link_participant(resolved)
        context = {"campaign": participant.campaign, "org": participant.campaign.organization}
        # GET only asks: link scanners in mail systems follow links, and must not decline.
        if request.method == "POST":
            services.participant_decline(participant=participant)
            return render(request, "participant/declined.html", context)
        if participant.status == Participant.Status.DECLINED:
            return render(request, "participant/declined.html", context)
        return render(request, "participant/decline.html", context)
