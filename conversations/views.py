"""The participant's chat at /c/, token-free: the session holds the link (campaigns.links).

Every request resolves the link again, so a revoked link stops at once, and every response
carries the participant-page headers (no Referer, nothing cached). Posting works as a plain
form (POST → redirect → GET); htmx posts get the `#chat` partial the full page includes. A
pending reply is polled for through `poll`, which answers 204 while nothing has changed;
without JavaScript the page refreshes itself until the reply is there."""

from __future__ import annotations

import uuid
from contextlib import contextmanager

from django.conf import settings
from django.core.exceptions import ValidationError
from django.http import Http404, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from campaigns import links
from campaigns.models import Campaign, Participant
from campaigns.participant_views import link_participant, participant_page
from conversations import pollstate, services
from conversations.models import Conversation, Message
from tap import ratelimit
from tap.tenancy import org_context

NOT_TAKING_ANSWERS = {
    Campaign.Status.PAUSED: "participant/paused.html",
    Campaign.Status.COMPLETED: "participant/closed.html",
    Campaign.Status.ARCHIVED: "participant/closed.html",
}
POST_SCOPE = "participant-post"


def post_limit() -> ratelimit.Limit:
    """Messages one participant may post (settings.TAP_PARTICIPANT_POST_RATE)."""
    return ratelimit.Limit.parse(settings.TAP_PARTICIPANT_POST_RATE)


def _htmx(request) -> bool:
    return request.headers.get("HX-Request") == "true"


@contextmanager
def _session_participant(request):
    """The participant whose live link the session holds, inside its organisation's context.
    No session, a revoked link and a draft campaign are all the ordinary 404."""
    resolved = links.from_session(request)
    if resolved is None:
        raise Http404("No such page.")
    with org_context(resolved.organization_id):
        participant = link_participant(resolved, "conversation")
        if participant.campaign.status == Campaign.Status.DRAFT:  # drafts have no live links
            raise Http404("No such page.")
        yield participant


def _conversation(participant: Participant, *, fresh: bool = False) -> Conversation | None:
    """The participant's conversation, or None before the first answer. Reading the page
    writes nothing: `services.message_post` opens the conversation (with the opening
    question) when the first answer arrives, so a link that is only looked at leaves no
    empty conversation in the creator's responses."""
    if fresh:
        return Conversation.objects.filter(participant=participant).first()
    try:
        return participant.conversation
    except Conversation.DoesNotExist:
        return None


def _state(conversation: Conversation | None) -> str:
    """What the page shows changes only with this: a poll that sends it back unchanged gets
    204 (nothing to swap) without reading the messages."""
    if conversation is None:
        return "new"
    return (
        f"{conversation.participant_turns}-{int(conversation.awaiting_reply)}"
        f"-{conversation.status}-{int(bool(conversation.reply_error))}"
    )


def _messages(campaign: Campaign, conversation: Conversation | None):
    if conversation is None:  # not stored yet: the opening question, as it will be
        return [Message(sender=Message.Sender.BOT, body=campaign.opening_question)]
    return (
        Message.objects.filter(conversation=conversation)
        .only("sender", "body", "turn", "created_at")
        .order_by("turn", "created_at")
    )


def _context(request, participant, conversation, *, body="", error="", focus=False) -> dict:
    campaign = participant.campaign
    return {
        "participant": participant,
        "campaign": campaign,
        "org": campaign.organization,
        "options": campaign.options,
        "conversation": conversation,
        "chat": _messages(campaign, conversation),
        "state": _state(conversation),
        "poll_token": (
            pollstate.poll_token(conversation.pk, links.session_hash(request))
            if conversation
            else ""
        ),
        "awaiting": bool(conversation and conversation.awaiting_reply),
        "completed": bool(conversation and conversation.status == Conversation.Status.COMPLETED),
        # A fresh key per form: the same form sent twice is one message (services.message_post).
        "client_key": uuid.uuid4().hex,
        # A refused answer stays in the box, and nothing (refresh, poll) may wipe it.
        "body": body,
        "error": error,
        "focus": focus,
    }


def _chat(request, participant, *, status=200, **kwargs):
    """The chat: the whole page, or for htmx the `#chat` partial the page includes."""
    conversation = _conversation(participant, fresh=True)
    htmx = _htmx(request)
    context = _context(request, participant, conversation, focus=htmx, **kwargs)
    template = "participant/partials/chat.html" if htmx else "participant/conversation.html"
    return render(request, template, context, status=status)


def _to_chat(request):
    """After a change: PRG without JavaScript; for htmx the page reloads (another page, e.g.
    'paused', replaces the chat)."""
    if _htmx(request):
        response = HttpResponse(status=204)
        response["HX-Redirect"] = reverse("chat:home")
        return response
    return redirect("chat:home")


@participant_page
@require_safe
def home(request):
    with _session_participant(request) as participant:
        campaign = participant.campaign
        if campaign.status != Campaign.Status.ACTIVE:
            return render(
                request,
                NOT_TAKING_ANSWERS[campaign.status],
                {"participant": participant, "campaign": campaign, "org": campaign.organization},
            )
        conversation = _conversation(participant)
        return render(
            request, "participant/conversation.html", _context(request, participant, conversation)
        )


@participant_page
@require_POST
def message(request):
    with _session_participant(request) as participant:
        body = request.POST.get("body", "").replace("\r\n", "\n")
        wait = ratelimit.hit(POST_SCOPE, str(participant.pk), post_limit())
        try:
            if wait:
                raise ValidationError(f"That was quick! Please wait {wait} s and send again.")
            services.message_post(
                participant=participant,
                body=body,
                client_key=request.POST.get("client_key", ""),
            )
        except ValidationError as exc:
            response = _chat(
                request,
                participant,
                body=body,
                error=" ".join(exc.messages),
                status=429 if wait else 422,
            )
            if wait:
                response["Retry-After"] = str(wait)
            return response
        if not _htmx(request):
            return redirect("chat:home")
        return _chat(request, participant)


@participant_page
@require_safe
def poll(request):
    """htmx polls this every second while a reply is pending (the partial stops the polling
    once the reply is there)."""
    if not _htmx(request):
        return redirect("chat:home")
    since = request.GET.get("since", "")
    # The fast answer (conversations.pollstate): nothing changed since the last full one.
    polled = pollstate.conversation_from_token(
        request.GET.get("c", ""), links.session_hash(request)
    )
    if polled is not None and since and pollstate.cached(polled) == since:
        return HttpResponse(status=204)
    try:
        with _session_participant(request) as participant:
            if participant.campaign.status != Campaign.Status.ACTIVE:
                return _to_chat(request)
            conversation = _conversation(participant)
            state = _state(conversation)
            if conversation is not None and conversation.pk == polled:
                pollstate.remember(conversation.pk, state)
            if since == state:
                return HttpResponse(status=204)
            context = _context(request, participant, conversation, focus=True)
            context["keep_draft"] = request.GET.get("draft") == "1"
            return render(request, "participant/partials/poll.html", context)
    except Http404:
        # The link was revoked (or the participant removed) while the page waited: htmx does
        # not swap in a 404, so the page would poll it every second for ever. Reload it: the
        # reload is the ordinary 404 page.
        response = HttpResponse(status=204)
        response["HX-Refresh"] = "true"
        return response


@participant_page
@require_POST
def retry(request):
    """After the interviewer's last attempt failed, the participant asks it again."""
    with _session_participant(request) as participant:
        if participant.campaign.status != Campaign.Status.ACTIVE:
            return _to_chat(request)  # the page that says why (paused, closed)
        conversation = _conversation(participant)
        if conversation is not None:
            services.reply_retry(conversation=conversation)
        if not _htmx(request):
            return redirect("chat:home")
        return _chat(request, participant)


@participant_page
@require_http_methods(["GET", "HEAD", "POST"])
def end(request):
    """'I'm done': a GET asks, a POST ends the conversation with the closing message."""
    with _session_participant(request) as participant:
        campaign = participant.campaign
        if campaign.status != Campaign.Status.ACTIVE:
            return _to_chat(request)
        context = {"participant": participant, "campaign": campaign, "org": campaign.organization}
        if request.method == "POST":
            try:
                services.conversation_end_by_participant(participant=participant)
            except ValidationError as exc:
                context["error"] = " ".join(exc.messages)
                return render(request, "participant/end.html", context, status=422)
            return _to_chat(request)
        conversation = _conversation(participant)
        if conversation is not None and conversation.status == Conversation.Status.COMPLETED:
            return _to_chat(request)
        if services.nothing_to_finish(conversation):
            context["error"] = services.NOTHING_TO_FINISH
        return render(request, "participant/end.html", context)
