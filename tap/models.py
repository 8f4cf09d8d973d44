"""Base classes for every model, and the durable outbox."""

import uuid

from django.db import models
from django.utils import timezone

from tap.tenancy import TenantManager


class TimestampedModel(models.Model):
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class TenantModel(TimestampedModel):
    """A row that belongs to one organisation.

    `objects` sees only the active organisation (and raises with none); `all_objects` is for
    the admin and system jobs on the service connection. Row-level security is added by the
    migration that creates the table (tap.rls)."""

    organization = models.ForeignKey(
        "orgs.Organization", on_delete=models.CASCADE, related_name="+", db_index=True
    )

    all_objects = models.Manager()
    objects = TenantManager()

    class Meta:
        abstract = True
        default_manager_name = "objects"
        base_manager_name = "all_objects"


class OutboxJob(models.Model):
    """A side effect to run once the transaction that asked for it has committed.

    Written in the same transaction as the change (so a rollback leaves no job and a broker
    outage loses nothing); published to Celery by the relay with this row's id as task id."""

    class Status(models.TextChoices):
        PENDING = "pending"
        QUEUED = "queued"
        RUNNING = "running"
        DONE = "done"
        DEAD = "dead"

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    organization_id = models.UUIDField(null=True, blank=True, db_index=True)
    task = models.CharField(max_length=200)
    queue = models.CharField(max_length=50, default="default")
    kwargs = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    max_attempts = models.PositiveIntegerField(default=5)
    available_at = models.DateTimeField(default=timezone.now)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)
    done_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "outbox_jobs"
        indexes = [
            models.Index(
                fields=["available_at"],
                name="outbox_due_idx",
                condition=models.Q(status__in=["pending", "queued", "running"]),
            ),
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(status__in=["pending", "queued", "running", "done", "dead"]),
                name="outbox_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.task} [{self.status}]"
