"""The participant's chat at /c/: plain form posts (POST → redirect → GET) and their htmx
partials, idempotent submits, the pending state and its polling, errors that keep the text,
retry after a failure, "I'm done", resuming, headers, escaping and query counts."""

from __future__ import annotations

import html as html_module
import re
import uuid
from datetime import timedelta

import pytest
from django.core import mail
from django.test import Client
from django.utils import timezone

from campaigns import services as campaign_services
from campaigns.models import Campaign, Participant
from conversations import services
from conversations.models import Conversation, Message
from tap import outbox
from tap.models import OutboxJob
from tap.tenancy import org_context
from tests.campaigns.test_participant_links import (
    OPENING,
    active_campaign,
    assert_private,
    link_in,
    participant,
    set_status,
)

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])

HX = {"HTTP_HX_REQUEST": "true"}
CLIENT_KEY = re.compile(r'name="client_key" value="([0-9a-f]{32})"')
POLL = re.compile(r'hx-get="/c/poll/\?since=([^"&]+)')
WAITING = "The interviewer is writing a reply"
REFRESH = '<meta http-equiv="refresh" content="2">'
# Statements per request, measured, and constant however long the conversation grows.
# Data queries of the GET: the session row, the link lookup, the tenant context (set and
# reset), the participant with campaign, organisation and conversation, the messages. The
# POST (the budget: 10) reads the session, link, context and participant the same
# way, then the locked conversation, the client key, and writes the message, the
# conversation and the reply job (whose trigger wakes the relay). The rest are
# BEGIN / SAVEPOINT / RELEASE / COMMIT of the request transaction and the tenant context.
GET_QUERIES, GET_DATA = 12, 6
POST_QUERIES, POST_DATA = 18, 10
POLL_QUERIES, POLL_DATA = 11, 5
TRANSACTION_CONTROL = re.compile(r"^(BEGIN|COMMIT|ROLLBACK|SAVEPOINT|RELEASE SAVEPOINT)\b")


# Two aspects the opening question does not cover, so the offline interviewer asks both
# follow-ups and ends at the limit: three questions in all.
MISSION = (
    "Understand where AI coding assistants help our engineers, where they get in the way, "
    "and what training would make them more useful."
)
ANSWERS = (
    "Writing unit tests for the billing service.",
    "It invents APIs that do not exist.",
    "A short workshop on prompting.",
)


def with_mission(campaign, mission=MISSION):
    with org_context(campaign.organization_id):
        Campaign.objects.filter(pk=campaign.pk).update(mission=mission)
    return campaign


@pytest.fixture
def chat(client, alice, org_a):
    """An active campaign whose participant has opened the emailed link in `client`."""
    campaign = active_campaign(org_a, alice, max_follow_ups=2)
    client.get(link_in(mail.outbox[0]))
    return campaign


def client_key(client) -> str:
    return CLIENT_KEY.search(client.get("/c/").content.decode()).group(1)


def send(client, body, key=None, **extra):
    return client.post(
        "/c/messages/", {"body": body, "client_key": key or client_key(client)}, **extra
    )


def transcript(org) -> list[tuple[str, int]]:
    with org_context(org.id):
        return list(Message.objects.order_by("turn", "created_at").values_list("sender", "turn"))


def conversation(org) -> Conversation:
    with org_context(org.id):
        return Conversation.objects.get()


def bodies(org) -> list[str]:
    with org_context(org.id):
        return list(Message.objects.order_by("turn", "created_at").values_list("body", flat=True))


# --- the page ------------------------------------------------------------------------------


def test_the_page_shows_the_consent_line_and_the_opening_question(client, chat, org_a):
    page = client.get("/c/")
    assert page.status_code == 200
    assert_private(page)
    html = page.content.decode()
    assert '<h1 class="h4 mb-2">Tooling</h1>' in html
    assert "Your answers go to <strong>Org A</strong>; an AI asks follow-up questions." in html
    assert OPENING in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert CLIENT_KEY.search(html)
    assert WAITING not in html
    assert REFRESH not in html
    assert "every 1s" not in html
    # Looking writes nothing: the first answer opens the conversation (with this question).
    assert transcript(org_a) == []
    send(client, "First.")
    assert transcript(org_a) == [("bot", 0), ("participant", 1)]


def test_each_render_carries_a_fresh_client_key(client, chat):
    assert client_key(client) != client_key(client)


# --- posting -------------------------------------------------------------------------------


def test_a_plain_post_redirects_and_the_reply_follows_the_outbox(client, chat, org_a):
    response = send(client, "Mostly for writing tests.")
    assert response.status_code == 302
    assert response["Location"] == "/c/"
    assert_private(response)
    assert transcript(org_a) == [("bot", 0), ("participant", 1)]

    pending = client.get("/c/").content.decode()
    assert "Mostly for writing tests." in pending
    assert WAITING in pending
    assert REFRESH in pending  # inside <noscript>: without JavaScript the page looks again
    assert 'hx-trigger="every 1s"' in pending
    assert re.search(r"<textarea[^>]*\bdisabled\b", pending)
    assert re.search(r'<button class="btn btn-primary" type="submit" disabled>', pending)

    outbox.run_due_inline()
    assert transcript(org_a) == [("bot", 0), ("participant", 1), ("bot", 1)]
    answered = client.get("/c/").content.decode()
    assert bodies(org_a)[-1].split("\n")[0][:40] in answered
    assert WAITING not in answered
    assert REFRESH not in answered
    assert "every 1s" not in answered
    assert not re.search(r"<textarea[^>]*\bdisabled\b", answered)


def test_an_htmx_post_gets_the_partial_and_polling_ends_with_the_reply(client, chat, org_a):
    response = send(client, "Code review, mostly.", **HX)
    assert response.status_code == 200
    assert_private(response)
    html = response.content.decode()
    assert html.lstrip().startswith('<div id="chat">')
    assert "<html" not in html
    assert "Code review, mostly." in html
    assert WAITING in html
    since = POLL.search(html).group(1)

    # Nothing new yet: 204, nothing to swap.
    idle = client.get(f"/c/poll/?since={since}", **HX)
    assert idle.status_code == 204
    assert_private(idle)

    outbox.run_due_inline()
    answered = client.get(f"/c/poll/?since={since}", **HX)
    assert answered.status_code == 200
    assert_private(answered)
    html = answered.content.decode()
    assert html.lstrip().startswith('<section id="chat-log"')
    assert "every 1s" not in html  # polling stops here
    assert WAITING not in html
    assert bodies(org_a)[-1].split("\n")[0][:40] in html
    # The answer box comes back on, out of band, with the focus.
    assert '<footer id="composer" class="card-footer bg-body py-3" hx-swap-oob="true">' in html
    assert re.search(r"<textarea[^>]*\bautofocus\b", html)


def poll_url(page: str) -> str:
    """The poll URL exactly as the page's hx-get has it."""
    return html_module.unescape(re.search(r'hx-get="(/c/poll/\?[^"]+)"', page)[1])


def test_waiting_polls_are_answered_from_the_cache_until_something_changes(
    client, chat, org_a, django_assert_max_num_queries
):
    page = send(client, "Code review, mostly.", **HX).content.decode()
    url = poll_url(page)
    # The first poll takes the full path and remembers the state …
    assert client.get(url, **HX).status_code == 204
    # … the next ones answer from it: no link lookup, no tenant context, no conversation —
    # only the session row the middleware reads.
    with django_assert_max_num_queries(POLL_QUERIES) as ctx:
        quick = client.get(url, **HX)
    (only,) = data_queries(ctx)
    assert only.startswith('SELECT "django_session"')
    assert quick.status_code == 204
    assert_private(quick)
    # The reply forgets it when it commits: the very next poll shows the reply.
    outbox.run_due_inline()
    answered = client.get(url, **HX)
    assert answered.status_code == 200
    assert WAITING not in answered.content.decode()


def test_a_forged_or_foreign_poll_token_gets_no_shortcut(client, chat, org_a):
    page = send(client, "Code review, mostly.", **HX).content.decode()
    url = poll_url(page)
    client.get(url, **HX)  # remembered for this conversation
    forged = re.sub(r"c=[^&]+", "c=" + str(uuid.uuid4()), url)
    # Someone with the URL but not the session gets no shortcut: a plain 204 to a guessed
    # `since` would tell them how far the conversation has got. The full path finds no
    # participant and answers every such poll alike: reload (to the ordinary 404).
    stranger = Client()
    for foreign in (url, forged, re.sub(r"since=[^&]+", "since=0-0-active-0", url)):
        response = stranger.get(foreign, **HX)
        assert (response.status_code, response.get("HX-Refresh")) == (204, "true")
    assert stranger.get("/c/").status_code == 404
    assert client.get(url, **HX).status_code == 204  # the participant's own session: fast


def test_polls_work_without_the_cache(client, chat, org_a, settings):
    settings.CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": "redis://127.0.0.1:1/0",  # nothing listens there
            "OPTIONS": {"socket_timeout": 0.2, "socket_connect_timeout": 0.2},
        }
    }
    settings.TAP_PARTICIPANT_POST_RATE = "100/60"
    page = send(client, "Code review, mostly.", **HX).content.decode()
    url = poll_url(page)
    assert client.get(url, **HX).status_code == 204
    outbox.run_due_inline()
    assert client.get(url, **HX).status_code == 200


def test_the_poll_is_for_htmx_only(client, chat):
    response = client.get("/c/poll/")
    assert response.status_code == 302
    assert response["Location"] == "/c/"


def test_a_double_submit_with_one_client_key_is_one_turn(client, chat, org_a):
    key = client_key(client)
    assert send(client, "Twice, by accident.", key).status_code == 302
    assert send(client, "Twice, by accident.", key).status_code == 302
    assert send(client, "Twice, by accident.", key, **HX).status_code == 200
    assert transcript(org_a) == [("bot", 0), ("participant", 1)]
    outbox.run_due_inline()
    assert transcript(org_a) == [("bot", 0), ("participant", 1), ("bot", 1)]
    jobs = OutboxJob.objects.using("service").filter(task="conversations.reply")
    assert jobs.count() == 1


def test_a_post_while_the_reply_is_pending_is_refused_politely(client, chat, org_a):
    send(client, "First answer.")
    for extra in ({}, HX):
        refused = send(client, "Second, too early.", **extra)
        assert refused.status_code == 422
        assert_private(refused)
        html = refused.content.decode()
        assert "Please wait for the interviewer&#x27;s reply before answering." in html
        assert ">Second, too early.</textarea>" in html  # kept
        assert WAITING in html
        # The kept text is not wiped: no refresh, and the poll leaves the box alone.
        assert REFRESH not in html
        assert "draft=1" in html
    assert transcript(org_a) == [("bot", 0), ("participant", 1)]

    outbox.run_due_inline()
    since = "0"  # whatever the page had: the state moved on
    kept = client.get(f"/c/poll/?since={since}&draft=1", **HX).content.decode()
    assert 'id="composer"' not in kept


@pytest.mark.parametrize(
    ("body", "error"),
    [
        ("   ", "Write an answer before sending."),
        ("x" * 5001, "Please keep an answer under 5,000 characters (this one has 5,001)."),
    ],
)
def test_empty_and_too_long_answers_get_a_clear_error_and_keep_the_text(
    client, chat, org_a, body, error
):
    for extra in ({}, HX):
        response = send(client, body, **extra)
        assert response.status_code == 422
        html = response.content.decode()
        alert = '<div class="alert alert-danger py-2 mb-2" id="chat-error" role="alert">'
        assert alert + error in html
        assert f">{body}</textarea>" in html
        assert 'aria-invalid="true"' in html
    assert transcript(org_a) == []


def test_a_form_without_its_key_is_refused(client, chat, org_a):
    response = client.post("/c/messages/", {"body": "Hello"})
    assert response.status_code == 422
    assert "The form expired" in response.content.decode()
    assert transcript(org_a) == []


def test_posts_are_rate_limited_per_participant(client, chat, org_a, settings):
    settings.TAP_PARTICIPANT_POST_RATE = "2/60"
    assert send(client, "One.").status_code == 302
    assert send(client, "Two.").status_code == 422  # pending, but counted
    refused = send(client, "Three.")
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 60
    assert_private(refused)
    assert "Please wait" in refused.content.decode()
    assert ">Three.</textarea>" in refused.content.decode()


def test_text_on_both_sides_is_escaped(client, chat, org_a):
    attack = "<script>alert(1)</script>"
    send(client, attack)
    outbox.run_due_inline()
    html = client.get("/c/").content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>alert" not in html
    # The interviewer's text is escaped the same way.
    with org_context(org_a.id):
        Message.objects.filter(sender="bot", turn=1).update(body='<img src=x onerror="alert(2)">')
    html = client.get("/c/").content.decode()
    assert "&lt;img src=x onerror=&quot;alert(2)&quot;&gt;" in html
    assert "<img src=x" not in html


def test_csrf_stays_on(client, chat, org_a):
    strict = Client(enforce_csrf_checks=True)
    strict.cookies = client.cookies
    assert strict.get("/c/").status_code == 200
    for url in ("/c/messages/", "/c/retry/", "/c/end/"):
        assert strict.post(url, {"body": "Hi", "client_key": uuid.uuid4().hex}).status_code == 403
    assert transcript(org_a) == []


def test_chat_urls_accept_only_their_methods(client, chat):
    assert client.post("/c/").status_code == 405
    assert client.get("/c/messages/").status_code == 405
    assert client.get("/c/retry/").status_code == 405
    assert client.post("/c/poll/").status_code == 405
    assert client.put("/c/end/").status_code == 405


def test_without_a_live_link_every_chat_url_is_the_ordinary_404(client, chat, alice, org_a):
    with org_context(org_a.id):
        campaign_services.links_revoke(actor=alice, participant=participant(org_a), reissue=False)
    for method, url in [
        ("get", "/c/"),
        ("post", "/c/messages/"),
        ("post", "/c/retry/"),
        ("get", "/c/end/"),
        ("post", "/c/end/"),
    ]:
        response = getattr(client, method)(url, **HX)
        assert response.status_code == 404, url
        assert_private(response)
    assert Client().get("/c/").status_code == 404
    # A page still open polls: it is told to reload (htmx would not show a 404, and would
    # poll for ever), and the reload is the 404.
    poll = client.get("/c/poll/?since=x", **HX)
    assert (poll.status_code, poll["HX-Refresh"]) == (204, "true")
    assert_private(poll)


# --- failure, ending, pausing, resuming -----------------------------------------------------


def test_after_the_interviewer_fails_the_participant_can_try_again(client, chat, org_a):
    send(client, "My answer.")
    with org_context(org_a.id):
        services.reply_failed(conversation_id=conversation(org_a).pk, turn=1, error="529")
    outbox.run_due_inline()  # the queued job finds nothing left to answer
    assert transcript(org_a) == [("bot", 0), ("participant", 1)]
    html = client.get("/c/").content.decode()
    assert "The interviewer could not answer just now. Please try again." in html
    assert ">Try again</button>" in html
    assert WAITING not in html

    response = client.post("/c/retry/")
    assert response.status_code == 302
    assert_private(response)
    html = client.get("/c/").content.decode()
    assert WAITING in html
    assert "Try again" not in html
    outbox.run_due_inline()
    assert transcript(org_a) == [("bot", 0), ("participant", 1), ("bot", 1)]


def test_try_again_works_after_the_conversation_was_marked_abandoned(client, chat, org_a):
    """The reply failed, the participant went away, the idle sweep marked it abandoned; days
    later they come back and press "Try again"."""
    send(client, "My answer.")
    with org_context(org_a.id):
        services.reply_failed(conversation_id=conversation(org_a).pk, turn=1, error="529")
        later = timezone.now() + timedelta(days=3)
        assert services.conversations_abandon_idle(idle_hours=48, now=later) == 1
    outbox.run_due_inline()
    assert ">Try again</button>" in client.get("/c/").content.decode()
    client.post("/c/retry/")
    assert (conversation(org_a).status, conversation(org_a).end_reason) == ("active", "")
    outbox.run_due_inline()
    assert transcript(org_a) == [("bot", 0), ("participant", 1), ("bot", 1)]


def test_try_again_asks_nothing_while_the_campaign_is_paused(client, chat, org_a, alice):
    send(client, "My answer.")
    with org_context(org_a.id):
        services.reply_failed(conversation_id=conversation(org_a).pk, turn=1, error="529")
    outbox.run_due_inline()
    with org_context(org_a.id):
        campaign = Campaign.objects.get()
        campaign_services.campaign_transition(actor=alice, campaign=campaign, to="paused")
    client.post("/c/retry/")
    assert conversation(org_a).reply_error  # nothing was asked of the interviewer
    assert not conversation(org_a).awaiting_reply
    # Through htmx the page reloads to the paused page, rather than staying as it was.
    response = client.post("/c/retry/", **HX)
    assert (response.status_code, response["HX-Redirect"]) == (204, "/c/")


def test_retry_through_htmx_gets_the_partial(client, chat, org_a):
    send(client, "My answer.")
    with org_context(org_a.id):
        services.reply_failed(conversation_id=conversation(org_a).pk, turn=1, error="529")
    response = client.post("/c/retry/", **HX)
    assert response.status_code == 200
    assert response.content.decode().lstrip().startswith('<div id="chat">')
    assert WAITING in response.content.decode()


def test_im_done_before_any_answer_finishes_nothing(client, chat, org_a):
    page = client.get("/c/").content.decode()
    assert 'name="body"' in page
    assert 'href="/c/end/"' not in page  # "I'm done" is offered once there is an answer
    ask = client.get("/c/end/")
    assert ask.status_code == 200
    assert "Nothing to finish yet" in ask.content.decode()
    assert "Yes, I'm done" not in ask.content.decode()
    refused = client.post("/c/end/")
    assert refused.status_code == 422
    assert "You haven&#x27;t answered yet" in refused.content.decode()
    assert participant(org_a).status != "completed"
    with org_context(org_a.id):
        assert not Conversation.objects.filter(status="completed").exists()
    # With an answer, the page offers it again.
    send(client, "Now I have something to say.")
    assert 'href="/c/end/"' in client.get("/c/").content.decode()


def test_im_done_asks_then_ends_with_the_closing_message(client, chat, org_a):
    send(client, "Enough said.")
    outbox.run_due_inline()
    ask = client.get("/c/end/")
    assert ask.status_code == 200
    assert_private(ask)
    assert "Finish the conversation?" in ask.content.decode()
    assert conversation(org_a).status == "active"  # a GET only asks

    done = client.post("/c/end/")
    assert done.status_code == 302
    assert done["Location"] == "/c/"
    assert conversation(org_a).status == "completed"
    assert participant(org_a).status == "completed"
    html = client.get("/c/").content.decode()
    assert "Thank you for taking the time to share your thoughts." in html  # closing message
    assert "Thank you — this conversation is complete." in html
    assert "Enough said." in html  # the transcript, read-only
    assert 'name="body"' not in html
    assert 'href="/c/end/"' not in html
    refused = send(client, "One more thing", uuid.uuid4().hex)
    assert refused.status_code == 422
    assert "This conversation has ended" in refused.content.decode()
    assert client.get("/c/end/")["Location"] == "/c/"


def test_the_interviewer_ends_at_the_follow_up_limit(client, chat, org_a):
    """max_follow_ups=2: the opening question and two follow-ups, then the closing message."""
    with_mission(chat)
    client.get("/c/")
    for number, answer in enumerate(ANSWERS, 1):
        if number > 1:
            assert conversation(org_a).status == "active", f"ended before answer {number}"
        assert send(client, answer).status_code == 302
        outbox.run_due_inline()
    assert conversation(org_a).status == "completed"
    assert conversation(org_a).end_reason == "follow-up limit reached"
    html = client.get("/c/").content.decode()
    assert "Thank you for taking the time to share your thoughts." in html
    assert "Thank you — this conversation is complete." in html
    assert 'name="body"' not in html


def test_a_paused_campaign_refuses_turns_and_shows_the_paused_page(client, chat, alice, org_a):
    key = client_key(client)
    with org_context(org_a.id):
        campaign_services.campaign_transition(actor=alice, campaign=chat, to="paused")
    refused = send(client, "Still here?", key)
    assert refused.status_code == 422
    assert "not taking answers right now" in refused.content.decode()
    assert ">Still here?</textarea>" in refused.content.decode()
    with org_context(org_a.id):
        assert not Conversation.objects.exists()  # a refused answer opens nothing
    assert "Tooling is paused" in client.get("/c/").content.decode()
    # htmx: a poll or "I'm done" reloads the page, which shows why.
    poll = client.get("/c/poll/?since=x", **HX)
    assert poll.status_code == 204
    assert poll["HX-Redirect"] == "/c/"
    assert client.post("/c/end/")["Location"] == "/c/"
    with org_context(org_a.id):
        assert not Conversation.objects.exists()  # nor does "I'm done" on a paused campaign


def test_a_closed_campaign_shows_the_closed_page(client, chat, org_a):
    set_status(chat, "completed")
    assert "Tooling has closed" in client.get("/c/").content.decode()


def test_coming_back_through_the_link_continues_the_conversation(client, chat, org_a):
    send(client, "First visit.")
    outbox.run_due_inline()
    later = Client()  # another day, another browser session
    assert later.get("/c/").status_code == 404
    assert later.get(link_in(mail.outbox[0]))["Location"] == "/c/"
    html = later.get("/c/").content.decode()
    assert "First visit." in html
    assert OPENING in html
    assert html.index(OPENING) < html.index("First visit.")
    assert send(later, "Second visit.").status_code == 302
    outbox.run_due_inline()
    assert transcript(org_a) == [
        ("bot", 0),
        ("participant", 1),
        ("bot", 1),
        ("participant", 2),
        ("bot", 2),
    ]


def test_an_abandoned_conversation_reopens_with_the_next_answer(client, chat, org_a):
    send(client, "Before the break.")
    outbox.run_due_inline()
    with org_context(org_a.id):
        Conversation.objects.update(status="abandoned")
    html = client.get("/c/").content.decode()
    assert 'name="body"' in html
    assert send(client, "After the break.").status_code == 302
    assert conversation(org_a).status == "active"


# --- query counts --------------------------------------------------------------------------


def grow(org, messages: int) -> None:
    """Pad the conversation to `messages` answered messages."""
    with org_context(org.id):
        conv = services.conversation_open(participant=Participant.objects.get())
        have = Message.objects.filter(conversation=conv).count()
        turn = conv.participant_turns
        rows = []
        for i in range(have, messages):
            if i % 2:
                turn += 1
            rows.append(
                Message(
                    organization_id=org.id,
                    conversation=conv,
                    sender="participant" if i % 2 else "bot",
                    body=f"Message {i}",
                    client_key=uuid.uuid4().hex,
                    turn=turn,
                )
            )
        Message.objects.bulk_create(rows)
        Conversation.objects.update(participant_turns=turn)
        # What the earlier answers did to the participant (the first answer's one-off write
        # of the participant row is not part of the steady cost measured here).
        Participant.objects.update(status="in_progress", last_activity_at=timezone.now())


def data_queries(context) -> list[str]:
    return [q["sql"] for q in context.captured_queries if not TRANSACTION_CONTROL.match(q["sql"])]


@pytest.mark.parametrize("size", [2, 40])
def test_the_page_and_a_post_cost_a_constant_handful_of_queries(
    client, chat, org_a, size, django_assert_max_num_queries
):
    client.get("/c/")
    grow(org_a, size)
    key = client_key(client)
    with django_assert_max_num_queries(GET_QUERIES) as get:
        assert client.get("/c/").status_code == 200
    assert len(data_queries(get)) <= GET_DATA, data_queries(get)
    with django_assert_max_num_queries(POST_QUERIES) as post:
        assert send(client, "Another answer.", key).status_code == 302
    assert len(data_queries(post)) <= POST_DATA, data_queries(post)
    with django_assert_max_num_queries(GET_QUERIES) as get:
        html = client.get("/c/").content.decode()
    assert len(data_queries(get)) <= GET_DATA
    assert f"Message {size - 1}" in html
    since = POLL.search(html).group(1)
    with django_assert_max_num_queries(POLL_QUERIES) as poll:
        assert client.get(f"/c/poll/?since={since}", **HX).status_code == 204
    assert len(data_queries(poll)) <= POLL_DATA, data_queries(poll)
