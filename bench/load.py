"""`make load`: 200 participants x 10 turns against the production server, while a creator
browses the campaign's pages and the organisation's dashboards.

The processes are those of `make run` (gunicorn, a Celery worker on every queue, the outbox
relay) with the offline interviewer. Participants behave like the chat page's htmx: post,
then poll once a second until the reply is there, with no pause to think. The creator logs
in and walks the campaign page, its responses, its analysis and the metrics overview in a
loop. Printed: throughput, POST / reply / pipeline and creator-page percentiles, errors,
lost and duplicated messages, unanswered turns; figures also go to bench/results/load.json.
Exit status 1 when anything was lost, duplicated, unanswered or failed.

    python -m tap.devenv exec .venv/bin/python -m bench.load [--participants N] [--turns N]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import sys
import threading
import time
import uuid

from bench.bench_chat import (
    ANSWERS,
    Browser,
    background,
    make_participants,
    participant_run,
    verify,
)
from bench.lib import RESULTS_DIR, django_setup, percentile, serve

CSRF = re.compile(r'name="csrfmiddlewaretoken" value="([^"]+)"')
PASSWORD = "load-test-" + uuid.uuid4().hex[:12]  # a throw-away account
# Broad enough that the interviewer has ten turns' worth to ask about (it ends early, as it
# should, once every aspect of a narrower mission is covered).
MISSION = (
    "Learn what slows engineering teams down: code review latency, flaky test suites, build "
    "tooling, missing documentation, release process, incident follow-ups, hiring pipeline, "
    "architecture decisions, and cross-team dependencies."
)
# Now and then a short answer, which gets a gentle probe rather than the next topic.
LOAD_ANSWERS = (*ANSWERS, "Not sure.")


def creator_pages(org_slug: str, campaign_id: str) -> list[str]:
    from django.urls import NoReverseMatch, reverse

    pages = [
        reverse("campaigns:detail", args=[org_slug, campaign_id]),
        reverse("campaigns:counts", args=[org_slug, campaign_id]),
        reverse("campaigns:responses", args=[org_slug, campaign_id]),
    ]
    for name, args in (
        ("campaigns:analysis:page", [org_slug, campaign_id]),
        ("metrics:overview", [org_slug]),
    ):
        with contextlib.suppress(NoReverseMatch):  # that part may not be there (yet)
            pages.append(reverse(name, args=args))
    return pages


def creator_run(base: str, email: str, pages: list[str], stats: dict, stop: threading.Event):
    browser = Browser(base)
    status, page, _ = browser.request("GET", "/accounts/login/")
    form = {"username": email, "password": PASSWORD, "csrfmiddlewaretoken": CSRF.search(page)[1]}
    status, _, _ = browser.request("POST", "/accounts/login/", form)
    if status != 302:
        stats["creator_errors"].append(f"login answered {status}")
        return
    while not stop.is_set():
        for path in pages:
            started = time.perf_counter()
            try:
                status, _, _ = browser.request("GET", path)
            except OSError as exc:
                stats["creator_errors"].append(f"{path}: {exc!r}")
                browser = Browser(base)
                continue
            elapsed = (time.perf_counter() - started) * 1000
            if status != 200:
                stats["creator_errors"].append(f"{path}: {status}")
            stats["creator_ms"].append(elapsed)
            time.sleep(0.5)  # a person reading, not a load generator


def run(participants: int, turns: int) -> dict:
    django_setup()
    from campaigns.models import Campaign
    from tap.orgs import services as org_services
    from tap.tenancy import org_context

    user, org, tokens = make_participants(participants, MISSION)
    user.set_password(PASSWORD)
    user.save(update_fields=["password"])
    with org_context(org.id):
        campaign_id = str(Campaign.objects.values_list("pk", flat=True).get())
    pages = creator_pages(org.slug, campaign_id)
    stats = {"post_ms": [], "reply_ms": [], "turns": 0, "errors": []}
    creator = {"creator_ms": [], "creator_errors": []}
    lock = threading.Lock()
    try:
        with (
            serve(name="gunicorn-load", collectstatic=True) as server,
            background({**os.environ}),
        ):
            stop = threading.Event()
            browsing = threading.Thread(
                target=creator_run, args=(server.url, user.email, pages, creator, stop)
            )
            browsing.start()
            started = time.perf_counter()
            threads = [
                threading.Thread(
                    target=participant_run,
                    args=(server.url, token, stats, lock, turns, LOAD_ANSWERS),
                )
                for token in tokens
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join()
            elapsed = time.perf_counter() - started
            stop.set()
            browsing.join()
        post_ms, reply_ms = sorted(stats["post_ms"]), sorted(stats["reply_ms"])
        creator_ms = sorted(creator["creator_ms"])

        def pct(values, q):
            return round(percentile(values, q), 1) if values else None

        return {
            "participants": participants,
            "turns_each": turns,
            "turns_done": stats["turns"],
            "closed_early_by_interviewer": stats.get("closed_early", 0),
            "duration_s": round(elapsed, 1),
            "turns_per_s": round(stats["turns"] / elapsed, 1),
            "errors": len(stats["errors"]),
            "first_error": stats["errors"][0] if stats["errors"] else "",
            "post_p50_ms": pct(post_ms, 50),
            "post_p99_ms": pct(post_ms, 99),
            "reply_p50_ms": pct(reply_ms, 50),
            "reply_p99_ms": pct(reply_ms, 99),
            "creator_pages": pages,
            "creator_requests": len(creator_ms),
            "creator_errors": len(creator["creator_errors"]),
            "creator_first_error": creator["creator_errors"][0]
            if creator["creator_errors"]
            else "",
            "creator_p50_ms": pct(creator_ms, 50),
            "creator_p99_ms": pct(creator_ms, 99),
            **verify(org, stats.get("posted", 0)),
        }
    finally:
        org_services.org_delete(actor=user, org=org)
        user.delete(using="service")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--participants", type=int, default=200)
    parser.add_argument("--turns", type=int, default=10)
    args = parser.parse_args(argv)
    figures = run(args.participants, args.turns)
    RESULTS_DIR.mkdir(exist_ok=True)
    (RESULTS_DIR / "load.json").write_text(json.dumps(figures, indent=2))
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    bad = (
        figures["errors"]
        + figures["creator_errors"]
        + figures["answers_lost"]
        + figures["duplicated_messages"]
        + figures["unanswered_turns"]
    )
    print("load: OK" if not bad else "load: FAILED (errors, lost, duplicated or unanswered)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
