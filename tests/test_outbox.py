"""The durable outbox: no job without a commit, no lost work while the broker is down, and
exactly one effect under duplicate delivery — with a real Celery worker on real Redis."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta
from unittest import mock

import psycopg
import pytest
from celery import Celery
from celery.contrib.testing.worker import start_worker
from django.core import mail
from django.db import connections
from django.utils import timezone

import conversations.tasks  # noqa: F401 - registers the reply task
import tap.orgs.tasks  # noqa: F401 - registers the tasks the worker runs
from tap import outbox
from tap.celery import app as celery_app
from tap.models import OutboxJob
from tap.orgs.models import Invitation
from tap.outbox import outbox_task
from tap.tenancy import org_context

SERVICE = "service"


@outbox_task(queue="default", name="tests.always_fails")
def always_fails():
    raise ValueError("poison")


def jobs():
    return OutboxJob.objects.using(SERVICE)


@pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])
def test_a_rolled_back_transaction_leaves_no_job(org_a):
    before = jobs().count()
    with pytest.raises(RuntimeError), org_context(org_a.id):
        outbox.enqueue("tests.always_fails", queue="default", org_id=org_a.id)
        raise RuntimeError("the change failed")
    assert jobs().count() == before
    with org_context(org_a.id):  # the control: a committed one is there
        outbox.enqueue("tests.always_fails", queue="default", org_id=org_a.id)
    assert jobs().count() == before + 1


@pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])
def test_the_relay_is_woken_at_commit_and_only_then(org_a):
    params = connections[SERVICE].get_connection_params()
    with psycopg.connect(**params, autocommit=True) as listener:
        listener.execute(f"LISTEN {outbox.NOTIFY_CHANNEL}")

        def woken() -> int:
            return len(list(listener.notifies(timeout=0.5)))

        with pytest.raises(RuntimeError), org_context(org_a.id):
            outbox.enqueue("tests.always_fails", queue="default", org_id=org_a.id)
            raise RuntimeError("the change failed")
        assert woken() == 0
        with org_context(org_a.id):
            outbox.enqueue("tests.always_fails", queue="default", org_id=org_a.id)
            outbox.enqueue_many(
                "tests.always_fails", queue="default", org_id=org_a.id, kwargs_list=[{}, {}]
            )
            assert woken() == 0  # not before the commit
        assert woken() == 1  # one wake-up for the whole transaction


def wait_for(predicate, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.1)
    return False


def dead_broker_publish(job):
    """Publish through a broker that refuses connections (nothing listens on port 1)."""
    dead = Celery("dead", broker="redis://127.0.0.1:1/0")
    dead.conf.broker_transport_options = {"socket_connect_timeout": 1, "socket_timeout": 1}
    dead.conf.broker_connection_timeout = 1
    dead.send_task(
        job.task,
        kwargs={"outbox_job_id": str(job.id)},
        task_id=str(job.id),
        queue=job.queue,
        retry=False,
    )


@pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])
def test_broker_outage_loses_nothing_and_duplicates_run_once(org_a, alice, client):
    client.force_login(alice)
    started = time.monotonic()
    response = client.post(
        f"/o/{org_a.slug}/members/invite/", {"email": "new@a.example", "role": "member"}
    )
    elapsed = time.monotonic() - started
    assert response.status_code == 302
    assert elapsed < 2, "a request that queues work must not wait for the broker"
    job = jobs().get(task="orgs.send_member_invitation")
    assert job.status == "pending"

    # The broker is down: the relay fails to publish and the job stays pending, untouched.
    assert outbox.relay_once(publish=dead_broker_publish) == 0
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("pending", 0)

    # The broker is back: a real worker on real Redis runs it, once.
    with start_worker(
        celery_app,
        pool="solo",
        concurrency=1,
        queues=["email"],
        perform_ping_check=False,
        shutdown_timeout=10,
    ):
        assert outbox.relay_once() == 1
        assert wait_for(lambda: jobs().get(pk=job.pk).status == "done")
        assert len(mail.outbox) == 1
        assert mail.outbox[0].to == ["new@a.example"]

        # The same message delivered again (a broker redelivery) does nothing.
        celery_app.send_task(
            job.task, kwargs={"outbox_job_id": str(job.id)}, task_id=str(job.id), queue="email"
        )
        time.sleep(1.5)
    assert len(mail.outbox) == 1
    with org_context(org_a.id):
        assert Invitation.objects.get(email="new@a.example").email_status == "sent"


@pytest.mark.django_db(databases=["default", "service"])
def test_a_poison_job_stops_at_the_attempt_cap():
    job = OutboxJob.objects.using(SERVICE).create(
        task="tests.always_fails", max_attempts=3, organization_id=uuid.uuid4()
    )
    for _ in range(5):
        jobs().filter(pk=job.pk).update(available_at=timezone.now())
        outbox.run_due_inline()
    job.refresh_from_db()
    assert job.status == "dead"
    assert job.attempts == 3
    assert "poison" in job.last_error


@pytest.mark.django_db(databases=["default", "service"])
def test_an_expired_lease_is_published_again():
    job = OutboxJob.objects.using(SERVICE).create(
        task="tests.always_fails",
        status="running",
        attempts=1,
        lease_expires_at=timezone.now() - timedelta(seconds=1),
        available_at=timezone.now() - timedelta(seconds=1),
    )
    published = []
    assert outbox.relay_once(publish=published.append) == 1
    job.refresh_from_db()
    assert published == [job]
    assert (job.status, job.attempts) == ("queued", 1)  # the next attempt counts when it starts
    assert outbox._claim(job.pk).attempts == 2


@pytest.mark.django_db(databases=["default", "service"])
def test_a_job_waiting_behind_a_backlog_spends_no_attempts():
    """Published, but no worker gets to it for longer than many leases (a large campaign's
    invitations, a long ingestion ahead of it): it is published again now and then, never
    given up, and runs once a worker reaches it."""
    job = OutboxJob.objects.using(SERVICE).create(
        task="tests.always_fails", max_attempts=3, organization_id=uuid.uuid4()
    )
    published = []
    for _ in range(6):  # twice as many republications as attempts
        assert outbox.relay_once(publish=published.append) == 1
        jobs().filter(pk=job.pk).update(available_at=timezone.now())  # its wait ran out
    job.refresh_from_db()
    assert (job.status, job.attempts, len(published)) == ("queued", 0, 6)
    outcomes = [outbox.execute(job.pk, lambda: None) for _ in published]
    assert outcomes == ["done"] + ["skipped"] * 5  # the copies do nothing
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("done", 1)


@pytest.mark.django_db(databases=["default", "service"])
def test_a_started_job_whose_every_lease_ran_out_is_given_up():
    job = OutboxJob.objects.using(SERVICE).create(
        task="tests.always_fails", max_attempts=2, organization_id=uuid.uuid4()
    )
    for _ in range(2):  # started twice, its worker killed each time
        outbox.relay_once(publish=lambda j: None)
        assert outbox._claim(job.pk) is not None
        jobs().filter(pk=job.pk).update(
            available_at=timezone.now(), lease_expires_at=timezone.now()
        )
    assert outbox._claim(job.pk) is None  # a late copy of the message does not start a third
    outbox.relay_once(publish=pytest.fail)
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("dead", 2)


@pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])
def test_an_email_job_outlasts_an_hour_long_mail_outage(org_a, settings):
    with org_context(org_a.id):
        email = outbox.enqueue("tests.always_fails", queue="email", org_id=org_a.id)
        other = outbox.enqueue("tests.always_fails", queue="default", org_id=org_a.id)
    email_job, other_job = jobs().get(pk=email), jobs().get(pk=other)
    assert other_job.max_attempts == settings.TAP_OUTBOX_MAX_ATTEMPTS
    # Every back-off at its shortest (the jitter's low end): the attempts still span the
    # better part of an hour.
    with mock.patch("tap.outbox.random.uniform", lambda low, _high: low):
        waits = [outbox.backoff(n).total_seconds() for n in range(1, email_job.max_attempts)]
    assert sum(waits) >= 25 * 60


@pytest.mark.django_db(databases=["default", "service"])
def test_a_live_lease_is_left_alone():
    OutboxJob.objects.using(SERVICE).create(
        task="tests.always_fails",
        status="queued",
        attempts=1,
        lease_expires_at=timezone.now() + timedelta(minutes=5),
        available_at=timezone.now() + timedelta(minutes=5),
    )
    assert outbox.relay_once(publish=pytest.fail) == 0


@pytest.mark.django_db(databases=["default", "service"])
def test_a_job_that_is_done_or_unknown_is_skipped():
    done = OutboxJob.objects.using(SERVICE).create(task="tests.always_fails", status="done")
    assert outbox.execute(done.pk, always_fails.outbox_body) == "skipped"
    assert outbox.execute(uuid.uuid4(), always_fails.outbox_body) == "skipped"


@pytest.mark.django_db(databases=["default", "service"])
def test_a_tenant_task_without_an_organisation_fails_clearly():
    job = OutboxJob.objects.using(SERVICE).create(task="tests.always_fails", status="queued")
    assert outbox.execute(job.pk, lambda: None) == "failed"
    job.refresh_from_db()
    assert "has no organisation" in job.last_error


@pytest.mark.django_db(databases=["default", "service"])
def test_a_worker_that_gets_the_message_at_once_finds_the_job_ready():
    """The relay commits the claim before it publishes: a fast worker must not skip."""
    job = OutboxJob.objects.using(SERVICE).create(
        task="tests.always_fails", organization_id=uuid.uuid4()
    )
    outcomes = []
    outbox.relay_once(publish=lambda j: outcomes.append(outbox.execute(j.pk, lambda: None)))
    assert outcomes == ["done"]
    job.refresh_from_db()
    assert (job.status, job.attempts) == ("done", 1)


@pytest.mark.django_db(databases=["default", "service"])
def test_a_failed_publish_gives_the_rest_of_the_batch_back():
    jobs_made = [
        OutboxJob.objects.using(SERVICE).create(task="tests.always_fails", organization_id=None)
        for _ in range(3)
    ]
    calls = []

    def flaky(job):
        calls.append(job.pk)
        if len(calls) == 2:
            raise ConnectionError("broker went away")

    assert outbox.relay_once(publish=flaky) == 1
    states = sorted(
        (j.status, j.attempts)
        for j in OutboxJob.objects.using(SERVICE).filter(pk__in=[j.pk for j in jobs_made])
    )
    assert states == [("pending", 0), ("pending", 0), ("queued", 0)]


@pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])
def test_each_queue_has_its_time_limits_and_a_lease_just_past_them(org_a, settings):
    reply = celery_app.tasks["conversations.reply"]
    soft, hard = settings.TAP_QUEUE_TIME_LIMITS["ai"]
    assert (reply.soft_time_limit, reply.time_limit) == (soft, hard)
    with org_context(org_a.id):
        ai = outbox.enqueue("conversations.reply", queue="ai", org_id=org_a.id)
        ingest = outbox.enqueue("tests.always_fails", queue="ingest", org_id=org_a.id)
    outbox.relay_once(publish=lambda job: None)
    for started in (ai, ingest):  # a worker starts each: its lease is its queue's
        outbox._claim(started)
    now = timezone.now()
    leases = {job.pk: job.lease_expires_at - now for job in jobs().filter(pk__in=[ai, ingest])}
    margin = settings.TAP_OUTBOX_LEASE_MARGIN_SECONDS
    # A killed AI reply is published again within minutes, not after the slowest queue's limit.
    assert timedelta(seconds=hard) < leases[ai] <= timedelta(seconds=hard + margin)
    ingest_hard = settings.TAP_QUEUE_TIME_LIMITS["ingest"][1]
    assert leases[ingest] > timedelta(seconds=ingest_hard)


@pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])
def test_a_failed_job_is_logged_with_its_organisation(org_a, caplog):
    with org_context(org_a.id):
        outbox.enqueue("tests.always_fails", queue="default", org_id=org_a.id)
    # The tap loggers do not propagate to the root, where caplog listens.
    logger = logging.getLogger("tap.outbox")
    logger.addHandler(caplog.handler)
    try:
        outbox.run_due_inline()
    finally:
        logger.removeHandler(caplog.handler)
    (failed,) = [r for r in caplog.records if r.getMessage() == "outbox job failed"]
    assert failed.org_id == str(org_a.id)
    assert failed.task == "tests.always_fails"
