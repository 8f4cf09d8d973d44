"""The participant chat under the production server, end to end.

1. The chat page GET, driven like the bare-view ceiling (16 keep-alive clients on loopback),
   reported as a ratio to `/ping` measured the same way in the same run.
2. 200 simulated participants x 5 turns with the offline interviewer: each opens its
   emailed link and loads the page, then does what the page's htmx does: posts an answer
   (the chat partial comes back) and polls `/c/poll/` once a second until the reply is
   there (204 while nothing changed); five times, with no pause to think. A Celery worker
   and the outbox relay run beside gunicorn, as in `make run`. Reported: errors, turns/s,
   POST and reply-latency percentiles, and from the database afterwards lost or duplicated
   messages (target 0) and unanswered turns.
"""

from __future__ import annotations

import html
import http.client
import os
import re
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from urllib.parse import urlencode, urlsplit

from bench.lib import RESULTS_DIR, ROOT, django_setup, load, percentile, serve

ORDER = 20
PARTICIPANTS = 200
TURNS = 5
CONCURRENCY = 16
CLIENT_KEY = re.compile(r'name="client_key" value="([0-9a-f]+)"')
CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
POLL_URL = re.compile(r'hx-get="(/c/poll/\?[^"]+)"')
ANSWERS = (
    "Mostly meetings ate the week.",
    "Our on-call rota was busy with alerts.",
    "Planning sessions ran long again.",
    "Waiting for decisions from other teams.",
    "Context switching between three projects.",
)


@contextmanager
def background(env: dict):
    """The Celery workers and the outbox relay, as `make run` starts them."""
    from tap.devenv import worker_commands

    commands = {
        **worker_commands(),
        "relay": [sys.executable, "manage.py", "outbox_relay", "--poll", "0.2"],
    }
    processes = []
    for name, command in commands.items():
        log = (RESULTS_DIR / f"chat-{name}.log").open("wb")
        processes.append(
            subprocess.Popen(
                command,
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    try:
        time.sleep(3)  # the worker connects and declares its queues
        yield
    finally:
        for process in processes:
            os.killpg(process.pid, 15)
        for process in processes:
            process.wait(20)


class Browser:
    """One participant: a keep-alive connection and a session cookie."""

    def __init__(self, base: str):
        parts = urlsplit(base)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        self.cookies: dict[str, str] = {}

    def request(self, method: str, path: str, body: dict | None = None, htmx: bool = False):
        headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items())}
        if htmx:
            headers["HX-Request"] = "true"
        data = None
        if body is not None:
            data = urlencode(body)
            headers["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            self.conn.request(method, path, body=data, headers=headers)
            response = self.conn.getresponse()
        except (BrokenPipeError, ConnectionResetError, http.client.RemoteDisconnected):
            # The server closed the idle keep-alive connection (gunicorn after 2 s): open
            # a new one and send again, as a browser does.
            self.conn.close()
            self.conn.request(method, path, body=data, headers=headers)
            response = self.conn.getresponse()
        text = response.read().decode()
        for header, value in response.getheaders():
            if header.lower() == "set-cookie":
                name, _, rest = value.partition("=")
                self.cookies[name] = rest.split(";", 1)[0]
        return response.status, text, response.getheader("Location")


def participant_run(
    base: str,
    token: str,
    stats: dict,
    lock: threading.Lock,
    turns: int = TURNS,
    answers: tuple[str, ...] = ANSWERS,
) -> None:
    browser = Browser(base)
    try:
        status, _text, location = browser.request("GET", f"/c/{token}/")
        assert status == 302, status
        assert location.endswith("/c/"), location
        status, page, _ = browser.request("GET", "/c/")
        assert status == 200, status
        for turn in range(1, turns + 1):
            if not CLIENT_KEY.search(page):  # the interviewer closed the conversation
                with lock:
                    stats["closed_early"] = stats.get("closed_early", 0) + 1
                break
            body = {
                "body": answers[(turn - 1) % len(answers)],
                "client_key": CLIENT_KEY.search(page).group(1),
                "csrfmiddlewaretoken": CSRF.search(page).group(1),
            }
            # As the page does with JavaScript: an htmx post answers with the chat partial,
            # which polls once a second; a poll answers 204 until something changed, then
            # the messages and, with the reply there, a fresh answer box.
            started = time.perf_counter()
            status, page, _ = browser.request("POST", "/c/messages/", body, htmx=True)
            posted = time.perf_counter()
            assert status == 200, f"POST answered {status}"
            with lock:
                stats["posted"] = stats.get("posted", 0) + 1
            poll = POLL_URL.search(page)
            while poll:  # the URL exactly as the page's hx-get has it
                time.sleep(1.0)
                status, partial, _ = browser.request("GET", html.unescape(poll[1]), htmx=True)
                assert status in (200, 204), f"poll answered {status}"
                if status == 200:
                    page = partial
                    poll = POLL_URL.search(partial)
            with lock:
                stats["post_ms"].append((posted - started) * 1000)
                stats["reply_ms"].append((time.perf_counter() - started) * 1000)
                stats["turns"] += 1
    except Exception as exc:  # counted, not raised: the run reports its errors
        with lock:
            stats["errors"].append(repr(exc)[:200])


MISSION = "Learn what slows engineering teams down: reviews, tests, tooling, docs."


def make_participants(n: int, mission: str = MISSION):
    """A throw-away org with an active campaign and n participants holding links."""
    from campaigns import services as campaign_services
    from campaigns.models import Campaign, Participant
    from tap.orgs import services as org_services
    from tap.orgs.models import User
    from tap.tenancy import org_context

    suffix = uuid.uuid4().hex[:8]
    user = User.objects.create_user(f"bench-chat-{suffix}@bench.example", None)
    org = org_services.org_create(actor=user, name=f"bench-chat-{suffix}")
    with org_context(org.id):
        campaign = Campaign.objects.create(
            organization=org,
            name="Chat bench",
            status="active",
            mission=mission,
            opening_question="What slowed you down last week?",
            settings={"max_follow_ups": 10},
        )
        Participant.objects.bulk_create(
            Participant(
                organization=org, campaign=campaign, email=f"c{i}@bench.example", status="invited"
            )
            for i in range(n)
        )
        tokens = [
            campaign_services.link_issue(participant=p)
            for p in Participant.objects.filter(campaign=campaign)
        ]
    return user, org, tokens


def verify(org, expected_answers: int = PARTICIPANTS * TURNS) -> dict:
    """Count from the database what the run left behind."""
    from django.db.models import Count, Q

    from conversations.models import Conversation, Message
    from tap.tenancy import org_context

    with org_context(org.id):
        per = list(
            Conversation.objects.annotate(
                answers=Count("messages", filter=Q(messages__sender="participant")),
                replies=Count("messages", filter=Q(messages__sender="bot", messages__turn__gte=1)),
            ).values_list("answers", "replies")
        )
        duplicated = (
            Message.objects.values("conversation", "sender", "turn")
            .annotate(n=Count("id"))
            .filter(n__gt=1)
            .count()
        )
        stamps = {
            (conversation, sender, turn): at
            for conversation, sender, turn, at in Message.objects.filter(turn__gte=1).values_list(
                "conversation_id", "sender", "turn", "created_at"
            )
        }
    # From an answer's commit to its reply's commit: the worker pipeline alone (relay, broker,
    # worker, interviewer), without the HTTP polling the participants' latency includes.
    pipeline_ms = sorted(
        (stamps[(c, "bot", t)] - at).total_seconds() * 1000
        for (c, sender, t), at in stamps.items()
        if sender == "participant" and (c, "bot", t) in stamps
    )
    answers = sum(a for a, _ in per)
    replies = sum(r for _, r in per)
    return {
        "conversations": len(per),
        "answers_stored": answers,
        "answers_lost": expected_answers - answers,
        "duplicated_messages": duplicated,
        "unanswered_turns": answers - replies,
        "pipeline_p50_ms": round(percentile(pipeline_ms, 50), 1) if pipeline_ms else None,
        "pipeline_p99_ms": round(percentile(pipeline_ms, 99), 1) if pipeline_ms else None,
    }


def run() -> dict:
    django_setup()
    from tap.orgs import services as org_services

    user, org, tokens = make_participants(PARTICIPANTS)
    try:
        with serve(name="gunicorn-chat", collectstatic=True) as server:
            env = {**os.environ}
            with background(env):
                # 1. The chat page GET against the bare view, same server, same run.
                viewer = Browser(server.url)
                viewer.request("GET", f"/c/{tokens[0]}/")
                cookie = "; ".join(f"{k}={v}" for k, v in viewer.cookies.items())
                ping = load(f"{server.url}/ping", CONCURRENCY, 5.0, warmup=1.0)
                chat = load(
                    f"{server.url}/c/", CONCURRENCY, 5.0, warmup=1.0, headers={"Cookie": cookie}
                )
                # 2. 200 participants x 5 turns.
                stats = {"post_ms": [], "reply_ms": [], "turns": 0, "errors": []}
                lock = threading.Lock()
                started = time.perf_counter()
                threads = [
                    threading.Thread(target=participant_run, args=(server.url, token, stats, lock))
                    for token in tokens
                ]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                elapsed = time.perf_counter() - started
        post_ms, reply_ms = sorted(stats["post_ms"]), sorted(stats["reply_ms"])
        return {
            "chat_get_rps": chat["requests_per_s"],
            "ping_rps": ping["requests_per_s"],
            "chat_get_x_ping": round(chat["requests_per_s"] / ping["requests_per_s"], 2),
            "chat_get_p50_ms": chat["p50_ms"],
            "chat_get_p99_ms": chat["p99_ms"],
            "chat_get_errors": chat["errors"],
            "sim_participants": PARTICIPANTS,
            "sim_turns_done": stats["turns"],
            "sim_errors": len(stats["errors"]),
            "sim_first_error": stats["errors"][0] if stats["errors"] else "",
            "sim_turns_per_s": round(stats["turns"] / elapsed, 1),
            "post_p50_ms": round(percentile(post_ms, 50), 1) if post_ms else None,
            "post_p99_ms": round(percentile(post_ms, 99), 1) if post_ms else None,
            "reply_p50_ms": round(percentile(reply_ms, 50), 1) if reply_ms else None,
            "reply_p99_ms": round(percentile(reply_ms, 99), 1) if reply_ms else None,
            **verify(org, stats.get("posted", 0)),
        }
    finally:
        org_services.org_delete(actor=user, org=org)
        user.delete(using="service")
