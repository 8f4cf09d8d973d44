"""The durable outbox: side effects that survive broker outages, crashes and retries.

    enqueue("orgs.send_member_invitation", queue="email", org_id=org.id, invitation_id=…)

writes an `outbox_jobs` row in the caller's transaction — nothing else. A web request never
talks to Redis, so a Redis outage can neither hang nor fail a page, and a rolled-back
transaction leaves no job behind.

The relay (`manage.py outbox_relay`, woken by NOTIFY at commit, polling once a second as a
fallback) claims due rows with `FOR UPDATE SKIP LOCKED` and publishes each to Celery with the
row's id as task id. An attempt is counted when a worker starts the job, not when it is
published: a job waiting behind a backlog spends none. A published job that no worker has
started by `republish_after` (the message may be lost) is published again; a started job whose
lease expires (worker killed, hard time limit) has used its attempt, and once `max_attempts`
have been used it is parked as `dead` for staff (Django admin → Outbox jobs).

Tasks are declared with `@outbox_task(queue=…)`. The wrapper claims the row (a duplicate
delivery of a finished or running job does nothing), runs the body inside the job's
organisation context, and records success, a retry with back-off, or death. Bodies must
still be idempotent by a database key: at-least-once is all a queue can promise.

A task whose death must be seen by a person (a participant waiting for a reply, a creator
watching an analysis) names an `on_dead` handler: it runs once the job is given up — after
the last attempt raised, or when the relay parks a job whose every lease ran out (worker
killed, hard time limit) — inside the job's organisation, with the job's kwargs.
"""

from __future__ import annotations

import logging
import random
import select
from collections.abc import Callable
from contextvars import ContextVar
from datetime import timedelta
from functools import wraps

from celery import shared_task
from django.conf import settings
from django.db import InterfaceError, OperationalError, connections, transaction
from django.utils import timezone

from tap.logging import task_id_var
from tap.models import OutboxJob
from tap.tenancy import org_context, org_scope

logger = logging.getLogger(__name__)

NOTIFY_CHANNEL = "tap_outbox"
DATABASE_DOWN = (OperationalError, InterfaceError)
DATABASE_DOWN_RETRIES = 12  # about two minutes of back-off
SERVICE_DB = "service"
REPUBLISH_QUEUED_AFTER = timedelta(minutes=5)


def enqueue(task: str, *, queue: str, org_id=None, max_attempts: int | None = None, **kwargs):
    """Record a job in the current transaction. Values must be JSON: pass ids, not objects."""
    job = OutboxJob(
        task=task,
        queue=queue,
        organization_id=org_id,
        kwargs=kwargs,
        max_attempts=max_attempts or max_attempts_for(queue),
    )
    # The INSERT also wakes the relay: a trigger NOTIFYs, delivered only at commit
    # (tap/migrations/0002_outbox_notify_trigger.py).
    job.save(force_insert=True)
    return job.id


def enqueue_many(task: str, *, queue: str, org_id, kwargs_list: list[dict]) -> int:
    """Record many jobs of one task in one INSERT (bulk invitations)."""
    if not kwargs_list:
        return 0
    jobs = [
        OutboxJob(
            task=task,
            queue=queue,
            organization_id=org_id,
            kwargs=kwargs,
            max_attempts=max_attempts_for(queue),
        )
        for kwargs in kwargs_list
    ]
    # No RETURNING: the app role may insert jobs but not read them.
    OutboxJob.objects.bulk_create(jobs, batch_size=1000)
    return len(jobs)


def max_attempts_for(queue: str) -> int:
    """Attempts a job of `queue` gets (settings.TAP_OUTBOX_MAX_ATTEMPTS_BY_QUEUE, else
    TAP_OUTBOX_MAX_ATTEMPTS). Email gets enough for its back-off to outlast a mail server's
    outage of an hour or so: five attempts are over in half a minute."""
    return settings.TAP_OUTBOX_MAX_ATTEMPTS_BY_QUEUE.get(queue, settings.TAP_OUTBOX_MAX_ATTEMPTS)


def republish_after(queue: str) -> timedelta:
    """How long a published job may wait for a worker before it is published again (its
    message may have been lost): never sooner than its lease, and not so often that a long
    backlog fills the queue with copies (a copy finds the job started, and does nothing)."""
    return max(lease_for(queue), REPUBLISH_QUEUED_AFTER)


def time_limits(queue: str) -> tuple[int, int]:
    """(soft, hard) seconds for a task on `queue` (settings.TAP_QUEUE_TIME_LIMITS)."""
    limits = settings.TAP_QUEUE_TIME_LIMITS
    return tuple(limits.get(queue, limits["default"]))


def lease_for(queue: str) -> timedelta:
    """How long a published job of `queue` is left alone before it is published again: past
    its hard time limit, a worker still "running" it has been killed."""
    if settings.TAP_OUTBOX_LEASE_SECONDS:
        return timedelta(seconds=settings.TAP_OUTBOX_LEASE_SECONDS)
    return timedelta(seconds=time_limits(queue)[1] + settings.TAP_OUTBOX_LEASE_MARGIN_SECONDS)


BACKOFF_CAP = timedelta(minutes=10)


def backoff(attempts: int) -> timedelta:
    """Exponential back-off with full jitter: ~2s, 4s, 8s … capped at BACKOFF_CAP."""
    ceiling = min(BACKOFF_CAP.total_seconds(), 2 ** max(1, attempts))
    return timedelta(seconds=random.uniform(ceiling / 2, ceiling))  # noqa: S311 - jitter only


# --- relay ---------------------------------------------------------------------------------


def relay_once(*, publish=None, batch: int = 100) -> int:
    """Publish due jobs and re-publish expired leases; returns how many were published.

    Two steps. First, in one short transaction on the service connection, claim the due rows
    (`FOR UPDATE SKIP LOCKED`): mark them queued until `republish_after` — and commit, so a
    worker that receives the message a millisecond later finds the row ready. A started job
    whose lease ran out, with every attempt used, is parked as dead instead. Then publish. A
    publish failure (broker down) gives that job and the rest of the batch back: the
    database stays the source of truth."""
    publish = publish or _publish
    now = timezone.now()
    claimed: list[tuple[OutboxJob, str]] = []
    given_up: list[OutboxJob] = []
    with transaction.atomic(using=SERVICE_DB):
        jobs = list(
            OutboxJob.objects.using(SERVICE_DB)
            .select_for_update(skip_locked=True)
            # Pending jobs that are due; queued ones no worker started in time, and running
            # ones whose lease ran out: for those, `available_at` holds the deadline.
            .filter(status__in=["pending", "queued", "running"], available_at__lte=now)
            .order_by("available_at")[:batch]
        )
        for job in jobs:
            # Only a started job has used attempts: one waiting in a backlog is not given up.
            if job.status == OutboxJob.Status.RUNNING and job.attempts >= job.max_attempts:
                job.status = OutboxJob.Status.DEAD
                job.last_error = (job.last_error + "\n" if job.last_error else "") + (
                    f"gave up after {job.attempts} attempts"
                )
                job.save(using=SERVICE_DB, update_fields=["status", "last_error", "updated_at"])
                logger.error("outbox job dead", extra={"job_id": str(job.id), "task": job.task})
                given_up.append(job)
                continue
            claimed.append((job, job.status))
            job.status = OutboxJob.Status.QUEUED
            job.available_at = job.lease_expires_at = now + republish_after(job.queue)
            job.save(
                using=SERVICE_DB,
                update_fields=["status", "available_at", "lease_expires_at", "updated_at"],
            )
    for job in given_up:
        _run_on_dead(job)
    published = 0
    for index, (job, _status_before) in enumerate(claimed):
        try:
            publish(job)
        except Exception as exc:  # broker unreachable, timeouts …
            logger.warning(
                "outbox publish failed; will retry",
                extra={"job_id": str(job.id), "error": repr(exc)},
            )
            for unsent, _status_before in claimed[index:]:
                # Only if nothing else touched it since our claim.
                OutboxJob.objects.using(SERVICE_DB).filter(
                    pk=unsent.pk, status="queued", lease_expires_at=unsent.lease_expires_at
                ).update(
                    status=OutboxJob.Status.PENDING,
                    available_at=now,
                    lease_expires_at=None,
                    updated_at=timezone.now(),
                )
            break
        published += 1
    return published


def _publish(job: OutboxJob) -> None:
    from tap.celery import app  # noqa: PLC0415

    app.send_task(
        job.task,
        kwargs={"outbox_job_id": str(job.id)},
        task_id=str(job.id),
        queue=job.queue,
        retry=False,
    )


def relay_forever(*, poll_seconds: float = 1.0, stop=lambda: False) -> None:
    """The relay loop: publish, then sleep until NOTIFY or the poll interval."""
    import psycopg  # noqa: PLC0415

    params = connections[SERVICE_DB].get_connection_params()
    listener = None
    while not stop():
        try:
            if listener is None or listener.closed:
                listener = psycopg.connect(**params, autocommit=True)
                listener.execute(f"LISTEN {NOTIFY_CHANNEL}")
            while relay_once() > 0:
                pass
            select.select([listener.fileno()], [], [], poll_seconds)
            for _ in listener.notifies(timeout=0):
                pass
        except Exception:
            logger.exception("outbox relay error; retrying")
            connections[SERVICE_DB].close()
            if listener is not None:
                listener.close()
            listener = None
            stop() or select.select([], [], [], poll_seconds)


# --- execution -----------------------------------------------------------------------------


class MissingOrganization(RuntimeError):
    """A tenant task was queued without the organisation it must run in."""


# Task name → the handler that records a job given up (`outbox_task(on_dead=…)`).
_ON_DEAD: dict[str, Callable[..., None]] = {}
_tasks_imported: list[bool] = []


def outbox_task(
    *,
    queue: str,
    name: str | None = None,
    tenant: bool = True,
    atomic: bool = True,
    on_dead: Callable[..., None] | None = None,
):
    """Declare a Celery task fed by the outbox. The body receives the job's kwargs and runs
    inside the job's organisation; a tenant task queued without one fails (and says so).

    With `atomic=False` the organisation is active but no transaction is open: the body opens
    its own (`org_context(current_org_id())`), e.g. to commit a claim before sending an email.
    `on_dead(**kwargs)` runs once the job is given up (module docstring).
    """

    def decorator(func):
        task_name = name or f"{func.__module__.rsplit('.', 1)[0]}.{func.__name__}"
        if on_dead is not None:
            _ON_DEAD[task_name] = on_dead

        # The queue travels on the outbox row (the relay publishes to it), not on the task;
        # the time limits are the queue's, and the job's lease outlasts the hard one.
        soft, hard = time_limits(queue)

        @shared_task(
            bind=True, name=task_name, ignore_result=True, soft_time_limit=soft, time_limit=hard
        )
        @wraps(func)
        def task(self, outbox_job_id: str):
            try:
                return execute(outbox_job_id, func, tenant=tenant, atomic=atomic)
            except DATABASE_DOWN as exc:
                # The database is unreachable (restarting, failing over), so the job could not
                # be claimed: have the broker deliver it again shortly rather than leave it to
                # the lease (minutes). Bounded; after that the lease still brings it back.
                connections.close_all()
                if self.request.retries >= DATABASE_DOWN_RETRIES:
                    raise
                raise self.retry(
                    exc=exc,
                    countdown=min(2**self.request.retries, 15),
                    max_retries=DATABASE_DOWN_RETRIES,
                ) from exc

        task.outbox_body = func
        task.outbox_queue = queue
        return task

    return decorator


_current_job: ContextVar[OutboxJob | None] = ContextVar("tap_outbox_job", default=None)


def is_last_attempt() -> bool:
    """Inside a task body: will a failure now park the job as dead (no retry follows)?"""
    job = _current_job.get()
    return job is not None and job.attempts >= job.max_attempts


def execute(job_id, func, *, tenant: bool = True, atomic: bool = True) -> str:
    """Claim, run and settle one job. Returns the outcome (for tests and logs)."""
    token = task_id_var.set(str(job_id))
    try:
        job = _claim(job_id)
        if job is None:
            return "skipped"
        job_token = _current_job.set(job)
        try:
            if tenant and not job.organization_id:
                raise MissingOrganization(f"{job.task} is a tenant task but has no organisation")
            if job.organization_id and atomic:
                with org_context(job.organization_id):
                    func(**job.kwargs)
            elif job.organization_id:
                with org_scope(job.organization_id):
                    func(**job.kwargs)
            else:
                func(**job.kwargs)
        except Exception as exc:
            logger.exception(
                "outbox job failed",
                # The job's org context has closed by now: name the org explicitly.
                extra={
                    "job_id": str(job_id),
                    "task": job.task,
                    "org_id": str(job.organization_id) if job.organization_id else None,
                },
            )
            if _settle_failure(job, exc):
                _run_on_dead(job)
            return "failed"
        finally:
            _current_job.reset(job_token)
        OutboxJob.objects.using(SERVICE_DB).filter(pk=job.pk).update(
            status=OutboxJob.Status.DONE, done_at=timezone.now(), updated_at=timezone.now()
        )
        return "done"
    finally:
        task_id_var.reset(token)


def _claim(job_id) -> OutboxJob | None:
    now = timezone.now()
    with transaction.atomic(using=SERVICE_DB):
        # Wait for a lock held elsewhere (a duplicate delivery settling) rather than skip:
        # skipping would drop a message whose row is about to become runnable.
        job = OutboxJob.objects.using(SERVICE_DB).select_for_update().filter(pk=job_id).first()
        if job is None:
            return None
        runnable = job.status == "queued" or (
            job.status == "running"
            and job.lease_expires_at
            and job.lease_expires_at < now
            # Every attempt used: the relay parks it (and runs its `on_dead`).
            and job.attempts < job.max_attempts
        )
        if not runnable:
            return None
        job.status = OutboxJob.Status.RUNNING
        job.attempts += 1  # counted when it starts: waiting in a backlog costs none
        job.lease_expires_at = job.available_at = now + lease_for(job.queue)
        job.save(
            using=SERVICE_DB,
            update_fields=["status", "attempts", "lease_expires_at", "available_at"],
        )
        return job


def _settle_failure(job: OutboxJob, exc: Exception) -> bool:
    """Record a failed attempt: back to pending with back-off, or dead. Returns whether dead."""
    dead = job.attempts >= job.max_attempts
    OutboxJob.objects.using(SERVICE_DB).filter(pk=job.pk).update(
        status=OutboxJob.Status.DEAD if dead else OutboxJob.Status.PENDING,
        available_at=timezone.now() + backoff(job.attempts),
        lease_expires_at=None,
        last_error=f"attempt {job.attempts}: {type(exc).__name__}: {exc}"[:2000],
        updated_at=timezone.now(),
    )
    return dead


def _run_on_dead(job: OutboxJob) -> None:
    """Run the task's `on_dead` handler for a job given up. A failing handler is logged, not
    raised: the job stays dead either way, and staff see it in the admin."""
    if job.task not in _ON_DEAD and not _tasks_imported:
        from tap.celery import app  # noqa: PLC0415

        app.loader.import_default_modules()  # the relay does not import the tasks otherwise
        _tasks_imported.append(True)
    handler = _ON_DEAD.get(job.task)
    if handler is None:
        return
    try:
        if job.organization_id:
            with org_context(job.organization_id):
                handler(**job.kwargs)
        else:
            with transaction.atomic():
                handler(**job.kwargs)
    except Exception:
        logger.exception(
            "outbox on_dead handler failed", extra={"job_id": str(job.id), "task": job.task}
        )


def run_due_inline(*, limit: int = 100) -> int:
    """Run due jobs in this process, without a broker (tests, `outbox_run`)."""
    from tap.celery import app  # noqa: PLC0415

    ran = 0

    def publish(job):
        nonlocal ran
        ran += 1
        queued.append(job)

    queued: list[OutboxJob] = []
    app.loader.import_default_modules()  # autodiscovery, as a worker does at start
    relay_once(publish=publish, batch=limit)
    for job in queued:
        app.tasks[job.task].apply(kwargs={"outbox_job_id": str(job.id)}, task_id=str(job.id))
    return ran


@shared_task(name="tap.outbox_purge", ignore_result=True)
def outbox_purge(days: int = 14) -> int:
    """Drop finished jobs after a while; dead ones stay for staff."""
    cutoff = timezone.now() - timedelta(days=days)
    deleted, _ = (
        OutboxJob.objects.using(SERVICE_DB).filter(status="done", done_at__lt=cutoff).delete()
    )
    return deleted
