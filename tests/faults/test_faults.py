"""Fault tests (`make faults`; `make test` runs them too): the real processes of `make run`,
broken on purpose — Redis stopped, a worker killed mid-reply, PostgreSQL restarted — and
afterwards nothing lost, nothing duplicated, every turn answered exactly once.

SMTP down and the Anthropic API answering 529 are in their own modules, marked `faults` too:
tests/campaigns/test_campaign_emails.py and tests/conversations/test_reply_anthropic.py.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from datetime import date, timedelta

import pytest
from django.db.models import Count

from bench.bench_chat import CLIENT_KEY, CSRF, Browser
from bench.lib import ROOT
from campaigns import services as campaign_services
from campaigns.models import Campaign, Participant
from conversations.analysis import service as analysis
from conversations.models import CampaignAnalysis, Message
from metrics import services as metrics
from metrics.models import DailyDeveloperMetric, DeveloperIdentity, MetricIngestionRun
from tap.models import OutboxJob
from tap.tenancy import org_context
from tests.fakes.anthropic_server import FakeAnthropic, text
from tests.faults.stack import PrivatePostgres, PrivateRedis, Stack, wait_for

pytestmark = [
    pytest.mark.faults,
    pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"]),
]

SHORT_LEASE = "6"  # seconds: a killed job is published again quickly


def chat_links(org, count: int) -> list[str]:
    """An active campaign with `count` participants, and a live link for each."""
    with org_context(org.id):
        campaign = Campaign.objects.create(
            organization=org,
            name=f"Faults {uuid.uuid4().hex[:6]}",
            status="active",
            mission="Learn what slows engineering teams down: reviews, tests, tooling.",
            opening_question="What slowed you down last week?",
            settings={"max_follow_ups": 5},
        )
        Participant.objects.bulk_create(
            Participant(organization=org, campaign=campaign, email=f"f{i}@x.example")
            for i in range(count)
        )
        return [
            campaign_services.link_issue(participant=p)
            for p in Participant.objects.filter(campaign=campaign)
        ]


def open_chat(base: str, token: str) -> tuple[Browser, str]:
    browser = Browser(base)
    status, _, _ = browser.request("GET", f"/c/{token}/")
    assert status == 302
    status, page, _ = browser.request("GET", "/c/")
    assert status == 200
    return browser, page


def answer(browser: Browser, page: str, body: str) -> int:
    form = {
        "body": body,
        "client_key": CLIENT_KEY.search(page).group(1),
        "csrfmiddlewaretoken": CSRF.search(page).group(1),
    }
    status, _, _ = browser.request("POST", "/c/messages/", form, htmx=True)
    return status


def turns(org) -> dict[str, int]:
    """Stored messages by sender (the opening question excluded), and duplicated turns."""
    with org_context(org.id):
        by_sender = dict(
            Message.objects.filter(turn__gte=1)
            .values_list("sender")
            .annotate(n=Count("id"))
            .values_list("sender", "n")
        )
        duplicated = (
            Message.objects.values("conversation", "sender", "turn")
            .annotate(n=Count("id"))
            .filter(n__gt=1)
            .count()
        )
    return {
        "answers": by_sender.get("participant", 0),
        "replies": by_sender.get("bot", 0),
        "duplicated": duplicated,
    }


@pytest.fixture
def redis():
    server = PrivateRedis()
    server.start()
    yield server
    server.stop()


def test_redis_down_nothing_is_lost_replies_analysis_and_ingestion_run_after(
    org_a, redis, tmp_path
):
    """Every kind of side effect queued while the broker is down — AI replies, a campaign
    analysis, a metrics ingestion — waits in the outbox and runs once Redis is back."""
    tokens = chat_links(org_a, 3)
    report = tmp_path / "copilot.ndjson"
    copilot_users_ndjson(report, developers=5, days=2)
    with Stack(redis_url=redis.url) as stack:
        chats = [open_chat(stack.url, token) for token in tokens]
        redis.stop()
        # The broker and the cache are gone: posting only needs PostgreSQL.
        for browser, page in chats:
            assert answer(browser, page, "Flaky CI and slow reviews.") == 200
        with org_context(org_a.id):
            campaign = Campaign.objects.get()
            analysis.campaign_analyze(actor=None, campaign=campaign)
            run = metrics.run_create(
                actor=None,
                org=org_a,
                files=[metrics.file_local(str(report))],
                source=MetricIngestionRun.Source.COMMAND,
            )
        time.sleep(3)
        assert turns(org_a) == {"answers": 3, "replies": 0, "duplicated": 0}
        # Kept, not lost, while the relay cannot publish: pending, or claimed for a publish
        # that is failing right now — and the failed publishes cost no attempts.
        kept = OutboxJob.objects.using("service").filter(
            status__in=["pending", "queued"], attempts__lte=1, organization_id=org_a.id
        )
        assert kept.filter(task="conversations.reply").count() == 3
        assert kept.exclude(task="conversations.reply").count() >= 2
        redis.start()  # empty: whatever was queued in it before is gone too
        wait_for(lambda: turns(org_a)["replies"] == 3, timeout=90, what="the replies")

        def finished():
            with org_context(org_a.id):
                return (
                    CampaignAnalysis.objects.filter(campaign=campaign, status="ready").exists()
                    and MetricIngestionRun.objects.get(pk=run.pk).status == "succeeded"
                )

        wait_for(finished, timeout=120, what="the analysis and the ingestion")
        time.sleep(2)
        assert turns(org_a) == {"answers": 3, "replies": 3, "duplicated": 0}
        with org_context(org_a.id):
            assert DailyDeveloperMetric.objects.count() == 10


def test_a_worker_killed_mid_reply_gives_exactly_one_reply(org_a, redis):
    (token,) = chat_links(org_a, 1)
    with FakeAnthropic(default=text("Which part of the review takes longest?")) as claude:
        claude.script(text("(never delivered)", delay=30))  # the first call hangs
        env = {
            "ANTHROPIC_API_KEY": "sk-ant-test",
            "ANTHROPIC_BASE_URL": claude.url,
            "TAP_OUTBOX_LEASE_SECONDS": SHORT_LEASE,
        }
        with Stack(redis_url=redis.url, env=env) as stack:
            browser, page = open_chat(stack.url, token)
            assert answer(browser, page, "Code review waits a day.") == 200
            wait_for(lambda: claude.message_requests, timeout=60, what="the model call")
            stack.kill("worker", signal.SIGKILL)  # the worker and its pool, mid-call
            assert turns(org_a)["replies"] == 0
            stack.start_worker("worker-2")
            wait_for(lambda: turns(org_a)["replies"] == 1, timeout=90, what="the reply")
            time.sleep(int(SHORT_LEASE) + 3)  # past another lease: nothing more comes
            assert turns(org_a) == {"answers": 1, "replies": 1, "duplicated": 0}
            with org_context(org_a.id):
                reply = Message.objects.get(sender="bot", turn=1)
            assert reply.body == "Which part of the review takes longest?"
            assert len(claude.message_requests) == 2  # the lost call, and the one stored


def test_a_half_open_broker_does_not_hang_the_relay_or_lose_the_job(org_a, redis):
    """A broker that accepts connections and never answers: the relay's publish times out,
    the job stays pending, and a relay with a working broker delivers it."""
    blackhole = socket.socket()
    blackhole.bind(("127.0.0.1", 0))
    blackhole.listen(16)  # accepts (the kernel completes the handshake), never reads
    port = blackhole.getsockname()[1]
    (token,) = chat_links(org_a, 1)
    try:
        # A relay stopped mid-publish leaves the job claimed until its lease runs out.
        with Stack(redis_url=redis.url, env={"TAP_OUTBOX_LEASE_SECONDS": SHORT_LEASE}) as stack:
            stack.kill("relay", signal.SIGTERM)
            browser, page = open_chat(stack.url, token)
            assert answer(browser, page, "Deploys are slow.") == 200
            stuck = subprocess.Popen(
                [sys.executable, "manage.py", "outbox_relay", "--poll", "0.2"],
                cwd=ROOT,
                env={**stack.env, "REDIS_URL": f"redis://127.0.0.1:{port}/0"},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            try:
                time.sleep(12)  # longer than the broker's 5 s socket timeouts
                assert stuck.poll() is None  # still alive, still trying
                job = OutboxJob.objects.using("service").get(task="conversations.reply")
                # Claimed, then given back after each timed-out publish: never lost, never
                # dead, and the failed publishes cost it no attempts.
                assert job.status in ("pending", "queued")
                assert job.attempts <= 1
                assert turns(org_a)["replies"] == 0
            finally:
                stuck.terminate()
                stuck.wait(20)
            stack.start("relay", [sys.executable, "manage.py", "outbox_relay", "--poll", "0.2"])
            wait_for(lambda: turns(org_a)["replies"] == 1, timeout=60, what="the reply")
            assert turns(org_a)["duplicated"] == 0
    finally:
        blackhole.close()


@pytest.fixture
def postgres():
    server = PrivatePostgres()
    server.init()
    yield server
    server.destroy()


def test_postgres_restarted_under_traffic(postgres, redis):
    """Readiness goes 503 while the database is down and 200 after; pages work again at
    once (no stale pooled connection); an answer is stored whole or not at all."""
    env = postgres.env()
    make = (
        "from bench.bench_chat import make_participants; "
        "_, _, tokens = make_participants(4); print(' '.join(tokens))"
    )
    tokens = subprocess.run(
        [sys.executable, "-c", f"import django; django.setup(); {make}"],
        cwd=ROOT,
        env={**os.environ, "DJANGO_SETTINGS_MODULE": "tap.settings", **env},
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert len(tokens) == 4
    with Stack(redis_url=redis.url, env=env) as stack:
        chats = [open_chat(stack.url, token) for token in tokens]
        probes: list[tuple[float, int]] = []
        stop = threading.Event()

        def probe():
            browser = Browser(stack.url)
            while not stop.is_set():
                try:
                    status, _, _ = browser.request("GET", "/readyz")
                except OSError:
                    status = 0
                    browser = Browser(stack.url)
                probes.append((time.monotonic(), status))
                time.sleep(0.2)

        prober = threading.Thread(target=probe)
        prober.start()
        try:
            time.sleep(1)
            # Two answers go in before the restart, with no worker running: their reply jobs
            # wait in Redis, and reach a worker while the database is down.
            stack.kill("worker", signal.SIGTERM)
            for browser, page in chats[:2]:
                assert answer(browser, page, "Before the restart.") == 200
            time.sleep(2)  # the relay publishes them
            postgres.stop("fast")
            stack.start_worker("worker-2")
            down_statuses = []
            for browser, page in chats[2:]:
                try:
                    down_statuses.append(answer(browser, page, "During the restart."))
                except OSError:
                    down_statuses.append(0)
            time.sleep(4)  # the worker gets the jobs and cannot claim them
            postgres.start()
            wait_for(
                lambda: probes and probes[-1][1] == 200, timeout=60, what="readiness to return"
            )
            # Every page works again at once: no stale connection from before the restart.
            for browser, _page in chats:
                for _ in range(3):
                    status, _, _ = browser.request("GET", "/c/")
                    assert status == 200
        finally:
            stop.set()
            prober.join()
        statuses = [status for _, status in probes]
        assert 503 in statuses, statuses
        assert statuses[-1] == 200
        assert all(status in (200, 503) for status in statuses), statuses
        assert all(status >= 500 or status == 0 for status in down_statuses), down_statuses
        # The two answers made before the restart are answered; the refused ones left no
        # trace: no half-written turn (an answer without its reply job, or the reverse).
        check = (
            "from django.db.models import Count; "
            "from conversations.models import Message, Conversation; "
            "from tap.models import OutboxJob; "
            "print(Message.all_objects.filter(sender='participant').count(), "
            "OutboxJob.objects.filter(task='conversations.reply').count(), "
            "Conversation.all_objects.filter(awaiting_reply=True).count())"
        )

        def counts():
            out = subprocess.run(
                [sys.executable, "-c", f"import django; django.setup(); {check}"],
                cwd=ROOT,
                env={
                    **os.environ,
                    "DJANGO_SETTINGS_MODULE": "tap.settings",
                    **env,
                    "DATABASE_URL": env["DATABASE_SERVICE_URL"],
                },
                check=True,
                capture_output=True,
                text=True,
            ).stdout.split()
            return tuple(int(n) for n in out)

        answers, jobs, _ = counts()
        assert answers == jobs == 2
        # Well inside the reply lease (~2.5 min): the broker delivered them again, not the lease.
        wait_for(lambda: counts()[2] == 0, timeout=60, what="both replies")


def copilot_users_ndjson(path, *, developers: int, days: int) -> int:
    """A Copilot users report shaped like the sample, `developers` x `days` lines."""
    feature = {
        "feature": "code_completion",
        "user_initiated_interaction_count": 0,
        "code_generation_activity_count": 40,
        "code_acceptance_activity_count": 12,
        "loc_suggested_to_add_sum": 300,
        "loc_suggested_to_delete_sum": 10,
        "loc_added_sum": 120,
        "loc_deleted_sum": 5,
    }
    sample = {
        "organization_id": "100000001",
        "enterprise_id": "200001",
        "code_generation_activity_count": 40,
        "code_acceptance_activity_count": 12,
        "totals_by_ide": [],
        "totals_by_feature": [feature],
        "totals_by_language_feature": [{**feature, "language": "python"}],
    }
    start = date(2026, 1, 1)
    with path.open("w") as out:
        for d in range(days):
            for i in range(developers):
                record = {
                    **sample,
                    "user_id": 1000 + i,
                    "user_login": f"dev{i:05d}",
                    "day": (start + timedelta(days=d)).isoformat(),
                    "user_initiated_interaction_count": i % 50,
                }
                out.write(json.dumps(record) + "\n")
    return developers * days


def test_an_ingestion_killed_half_way_leaves_nothing_and_a_rerun_completes(org_a, tmp_path):
    report = tmp_path / "copilot-users.ndjson"
    lines = copilot_users_ndjson(report, developers=300, days=120)
    command = [sys.executable, "manage.py", "ingest_metrics", "--org", org_a.slug, "--json"]
    runs = MetricIngestionRun.all_objects.using("service").filter(organization=org_a)
    ingest = subprocess.Popen(
        [*command, str(report)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    wait_for(
        lambda: runs.filter(status="processing").exists() or ingest.poll() is not None,
        timeout=60,
        interval=0.05,
        what="the run to start",
    )
    time.sleep(1.0)  # well into the file
    assert ingest.poll() is None, "the run finished before it could be killed: make it bigger"
    ingest.send_signal(signal.SIGKILL)
    ingest.wait(10)

    def visible(model) -> int:
        return model.all_objects.using("service").filter(organization=org_a).count()

    assert visible(DailyDeveloperMetric) == 0  # nothing of the killed run
    assert visible(DeveloperIdentity) == 0
    done = subprocess.run(
        [*command, str(report)], cwd=ROOT, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout)
    assert (summary["status"], summary["rows_ingested"]) == ("succeeded", lines)
    assert visible(DailyDeveloperMetric) == lines
    assert visible(DeveloperIdentity) == 300
