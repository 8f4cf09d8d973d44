"""Campaign analysis at scale: the offline engine on 10,000 conversations / 100,000 messages
(wall time and peak memory of a full run, each in a fresh process), a refresh after 1% of the
conversations changed (ratio to the full run; target 10x or more), the cached analysis page (same
queries for a small and the large campaign, nothing recomputed), and the Claude engine against
the fake Messages API (tokens per conversation, requests, prompt-cache hits, map-reduce).

Baseline in the same run: reading every message body of the campaign once (the least any
analysis must do). The tables are ANALYZEd after loading, as autovacuum would do. Targets
from the issue: full run < 60 s and < 1 GB on 2 cores. The data
lives in a throw-away organisation of the dev database, deleted at the end.
"""

from __future__ import annotations

import importlib
import json
import os
import random
import subprocess
import sys
import time
import uuid
from datetime import timedelta

from bench.lib import django_setup

ORDER = 200
CONVERSATIONS = 10_000
TURNS = 5  # 5 questions + 5 answers = 10 messages a conversation
CHANGED_SHARE = 0.01
CLAUDE_CONVERSATIONS = 200

TOPICS = {
    "review": (
        ["code review", "pull requests", "the reviewer queue", "review comments"],
        ["takes days", "blocks my work", "is slow and frustrating", "waits far too long"],
    ),
    "docs": (
        ["the documentation", "onboarding guides", "the internal wiki", "API docs"],
        ["are excellent", "helped me a lot", "are clear and friendly", "made onboarding easy"],
    ),
    "ci": (
        ["flaky tests", "the CI pipeline", "integration builds", "test reruns"],
        ["fail randomly", "waste hours every week", "are unreliable", "break for no reason"],
    ),
    "ai": (
        ["AI code suggestions", "the assistant", "autocomplete", "generated tests"],
        ["save me time", "are surprisingly good", "help with boilerplate", "speed me up"],
    ),
    "meetings": (
        ["meetings", "stand-ups", "planning sessions", "status calls"],
        ["eat my afternoons", "run too long", "interrupt deep work", "feel pointless"],
    ),
}
FILLER = ["Honestly,", "Mostly", "Last week", "In my team", "Overall", "Sometimes"]


def _answer(rng: random.Random, topic: str) -> str:
    things, verdicts = TOPICS[topic]
    return (
        f"{rng.choice(FILLER)} {rng.choice(things)} {rng.choice(verdicts)}. "
        f"I think {rng.choice(things)} {rng.choice(verdicts)} too."
    )


def _generate(org, campaign, count: int, seed: int = 7, start: int = 0) -> list:
    """`count` completed conversations of TURNS answers each, with bulk inserts."""
    from campaigns.models import Participant
    from conversations.models import Conversation, Message

    rng = random.Random(seed)
    now = timezone_now()
    people = Participant.objects.bulk_create(
        [
            Participant(
                organization=org,
                campaign=campaign,
                email=f"p{start + i}@bench.example",
                status="completed",
            )
            for i in range(count)
        ],
        batch_size=5000,
    )
    conversations = Conversation.objects.bulk_create(
        [
            Conversation(
                organization=org,
                campaign=campaign,
                participant=p,
                status="completed",
                participant_turns=TURNS,
                created_at=now - timedelta(seconds=count - i),
            )
            for i, p in enumerate(people)
        ],
        batch_size=5000,
    )
    topics = list(TOPICS)
    messages = []
    for conversation in conversations:
        main = rng.choice(topics)
        for turn in range(TURNS):
            topic = main if rng.random() < 0.75 else rng.choice(topics)
            messages.append(
                Message(
                    organization=org,
                    conversation=conversation,
                    sender="bot",
                    body="Could you tell me more about that?",
                    client_key=f"b{turn}",
                    turn=turn,
                )
            )
            messages.append(
                Message(
                    organization=org,
                    conversation=conversation,
                    sender="participant",
                    body=_answer(rng, topic),
                    client_key=f"p{turn}",
                    turn=turn + 1,
                )
            )
        if len(messages) >= 20_000:
            Message.objects.bulk_create(messages, batch_size=5000)
            messages = []
    Message.objects.bulk_create(messages, batch_size=5000)
    return conversations


def _analyze_tables() -> None:
    """Planner statistics for the freshly loaded tables, as autovacuum would soon gather:
    without them PostgreSQL joins 100,000 messages to their conversations by nested loops."""
    from bench.lib import pg_connect

    with pg_connect("owner", autocommit=True) as conn:
        conn.execute(
            "ANALYZE participants, conversations, messages, conversation_analysis, "
            "campaign_analysis"
        )


def timezone_now():
    from django.utils import timezone

    return timezone.now()


def _child(org_id: str, campaign_id: str) -> None:
    """One analysis in this (fresh) process; prints wall time and peak RSS as JSON. The
    process first loads what a worker has loaded once for all its jobs (Django, the engine,
    scikit-learn), timed apart as `process_start_s`."""
    import resource

    started = time.perf_counter()
    django_setup()
    for module in ("sklearn.cluster", "sklearn.feature_extraction.text", "sklearn.metrics"):
        importlib.import_module(module)  # a worker has them loaded after its first job

    from campaigns.models import Campaign
    from conversations.analysis.service import campaign_analyze, get_engine
    from tap.tenancy import org_context, org_scope

    get_engine()
    process_start = time.perf_counter() - started
    started = time.perf_counter()
    with org_scope(org_id):
        with org_context(org_id):
            campaign = Campaign.objects.get(pk=campaign_id)
        analysis = campaign_analyze(actor=None, campaign=campaign, run_now=True)
    wall = time.perf_counter() - started
    print(
        json.dumps(
            {
                "wall_s": round(wall, 2),
                "process_start_s": round(process_start, 2),
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
                "status": analysis.status,
                "error": analysis.error,
                "conversations": analysis.conversation_count,
                "themes": len(analysis.themes),
                "updated_in_place": analysis.engine_state.get("drift", 0) > 0,
            }
        )
    )


def _run_child(org_id, campaign_id) -> dict:
    result = subprocess.run(
        [sys.executable, "-m", "bench.bench_analysis", "child", str(org_id), str(campaign_id)],
        capture_output=True,
        text=True,
        env=os.environ.copy(),
        check=False,
        timeout=900,
    )
    if result.returncode != 0:
        raise RuntimeError(result.stderr[-3000:])
    return json.loads(result.stdout.strip().splitlines()[-1])


def _page(client, url: str) -> dict:
    import statistics

    from django.db import connections

    client.get(url)
    queries = []

    def count(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    with connections["default"].execute_wrapper(count):
        response = client.get(url)
    assert response.status_code == 200, response.status_code
    times = []
    for _ in range(10):
        started = time.perf_counter()
        client.get(url)
        times.append((time.perf_counter() - started) * 1000)
    return {"median_ms": round(statistics.median(times), 1), "queries": len(queries)}


def _quiet() -> None:
    import logging

    # Thousands of page views and fake API calls would bury the figures.
    for name in ("tap.access", "httpx2", "httpx", "celery.app.trace"):
        logging.getLogger(name).setLevel(logging.WARNING)


def run() -> dict:
    django_setup()
    _quiet()
    from django.test import Client, override_settings

    from campaigns.models import Campaign
    from conversations.models import CampaignAnalysis, Conversation, Message
    from tap.models import OutboxJob
    from tap.orgs import services as org_services
    from tap.orgs.models import User
    from tap.tenancy import org_context

    suffix = uuid.uuid4().hex[:8]
    user = User.objects.create_user(f"bench-{suffix}@bench.example", None, name="Bench")
    org = org_services.org_create(actor=user, name=f"bench-analysis-{suffix}")
    figures: dict = {}
    try:
        with org_context(org.id):
            big = Campaign.objects.create(
                organization=org,
                name="Big",
                mission="Learn how engineers experience their tools.",
                opening_question="How was your week?",
                status="active",
            )
            small = Campaign.objects.create(
                organization=org,
                name="Small",
                mission="Learn how engineers experience their tools.",
                opening_question="How was your week?",
                status="active",
            )
        started = time.perf_counter()
        with org_context(org.id):
            conversations = _generate(org, big, CONVERSATIONS)
            _generate(org, small, 20, start=CONVERSATIONS)
            messages = Message.objects.filter(conversation__campaign=big).count()
        figures["dataset"] = {
            "conversations": len(conversations),
            "messages": messages,
            "generate_s": round(time.perf_counter() - started, 1),
        }
        _analyze_tables()

        # Baseline: read every message body once.
        started = time.perf_counter()
        with org_context(org.id):
            total = sum(
                len(b)
                for b in Message.objects.filter(conversation__campaign=big).values_list(
                    "body", flat=True
                )
            )
        baseline = time.perf_counter() - started
        assert total > 0

        full = _run_child(org.id, big.pk)
        assert full["status"] == "ready", full
        figures["full_run"] = {
            **full,
            "target": "< 60 s, < 1024 MB",
            "x_read_baseline": round(full["wall_s"] / baseline, 1),
        }
        figures["baseline_read_messages_s"] = round(baseline, 2)

        # 1% of the conversations get one more answer.
        rng = random.Random(11)
        changed = rng.sample(conversations, int(CONVERSATIONS * CHANGED_SHARE))
        with org_context(org.id):
            Message.objects.bulk_create(
                [
                    Message(
                        organization=org,
                        conversation=c,
                        sender="participant",
                        body=_answer(rng, "ci"),
                        client_key="late",
                        turn=TURNS + 1,
                    )
                    for c in changed
                ]
            )
            Conversation.objects.filter(pk__in=[c.pk for c in changed]).update(
                participant_turns=TURNS + 1, updated_at=timezone_now()
            )
        refresh = _run_child(org.id, big.pk)
        assert refresh["status"] == "ready", refresh
        figures["refresh_1pct"] = {
            **refresh,
            "x_faster_than_full": round(full["wall_s"] / refresh["wall_s"], 1),
            "target": ">= 10x",
        }

        # The cached page: the same queries for 20 and 10,000 conversations, no recompute.
        _run_child(org.id, small.pk)
        with org_context(org.id):
            generated = CampaignAnalysis.objects.get(campaign=big).generated_at
        jobs = OutboxJob.objects.using("service").filter(organization_id=org.id).count()
        client = Client(HTTP_HOST="localhost")
        client.force_login(user)
        base = f"/o/{org.slug}/campaigns/"
        figures["page_small_20"] = _page(client, f"{base}{small.pk}/analysis/")
        figures["page_large_10000"] = _page(client, f"{base}{big.pk}/analysis/")
        figures["page_large_theme_list"] = _page(client, f"{base}{big.pk}/analysis/?theme=t1")
        figures["trivial_page"] = _page(client, "/ping")
        with org_context(org.id):
            assert CampaignAnalysis.objects.get(campaign=big).generated_at == generated
        assert OutboxJob.objects.using("service").filter(organization_id=org.id).count() == jobs
        figures["page_constant_queries"] = (
            figures["page_small_20"]["queries"] == figures["page_large_10000"]["queries"]
        )
        figures["page_large_x_trivial"] = round(
            figures["page_large_10000"]["median_ms"] / figures["trivial_page"]["median_ms"], 1
        )

        figures["claude"] = _claude(org, override_settings)
        return figures
    finally:
        org_services.org_delete(actor=user, org=org)
        user.delete(using="service")


def _claude(org, override_settings) -> dict:
    """The Claude engine on CLAUDE_CONVERSATIONS conversations against the fake server (the
    fake plays the prompt cache: a repeated tools+system prefix counts as a cache read)."""
    from campaigns.models import Campaign
    from conversations.analysis.service import campaign_analyze
    from tap import ai
    from tap.tenancy import org_context, org_scope
    from tests.analysis.claude_fake import Responder
    from tests.fakes.anthropic_server import FakeAnthropic

    out = {}
    with FakeAnthropic() as fake:
        fake._script = Responder(fake)
        for label, budget in (("budget_120k", 120_000), ("budget_3k_map_reduce", 3_000)):
            with override_settings(
                ANTHROPIC_API_KEY="sk-ant-bench",
                ANTHROPIC_BASE_URL=fake.url,
                TAP_ANALYSIS_TOKEN_BUDGET=budget,
                TAP_ANALYSIS_CONCURRENCY=4,
            ):
                ai._backend.cache_clear()
                with org_context(org.id):
                    campaign = Campaign.objects.create(
                        organization=org,
                        name=f"Claude {label}",
                        mission="Learn how engineers experience their tools.",
                        opening_question="How was your week?",
                        status="active",
                    )
                    _generate(org, campaign, CLAUDE_CONVERSATIONS, start=50_000 + len(out) * 1000)
                fake.requests.clear()
                fake._script = Responder(fake)
                started = time.perf_counter()
                with org_scope(org.id):
                    analysis = campaign_analyze(actor=None, campaign=campaign, run_now=True)
                wall = time.perf_counter() - started
                requests = fake.message_requests
                extract = [
                    r
                    for r in requests
                    if r.body["tool_choice"]["name"] == "record_conversation_analysis"
                ]
                n = analysis.conversation_count
                out[label] = {
                    "status": analysis.status,
                    "wall_s": round(wall, 2),
                    "requests": len(requests),
                    "synthesis_requests": len(requests) - len(extract),
                    "tokens_in_per_conversation": round(analysis.tokens_in / n, 1),
                    "tokens_out_per_conversation": round(analysis.tokens_out / n, 1),
                    "cache_read_tokens": analysis.cache_read_tokens,
                    "requests_hitting_prompt_cache": fake._script.cache_hits,
                    "cost_usd": float(analysis.cost_usd),
                }
                # A second ask with nothing changed: no request at all.
                fake.requests.clear()
                with org_scope(org.id):
                    campaign_analyze(actor=None, campaign=campaign, run_now=True)
                out[label]["requests_when_fresh"] = len(fake.message_requests)
        ai._backend.cache_clear()
    return out


if __name__ == "__main__" and sys.argv[1:2] == ["child"]:
    _child(sys.argv[2], sys.argv[3])
