"""Developer identities, daily metrics and ingestion runs (skeleton: the metrics issue builds
the parsers, identity resolution and dashboards)."""

from django.conf import settings
from django.db import models
from django.db.models.functions import Lower

from tap.models import TenantModel


class DeveloperIdentity(TenantModel):
    display_name = models.CharField(max_length=200, blank=True)
    github_login = models.CharField(max_length=100, blank=True)
    email = models.EmailField(max_length=254, blank=True)
    aliases = models.JSONField(default=list, blank=True)

    class Meta(TenantModel.Meta):
        db_table = "developer_identities"
        verbose_name_plural = "developer identities"
        constraints = [
            models.UniqueConstraint(fields=["organization", "id"], name="identities_org_id_uniq"),
            models.UniqueConstraint(
                "organization",
                Lower("github_login"),
                condition=~models.Q(github_login=""),
                name="identities_org_login_uniq",
            ),
            models.UniqueConstraint(
                "organization",
                Lower("email"),
                condition=~models.Q(email=""),
                name="identities_org_email_uniq",
            ),
        ]

    def __str__(self) -> str:
        return self.display_name or self.github_login or self.email


class MetricIngestionRun(TenantModel):
    class Status(models.TextChoices):
        PENDING = "pending"
        PROCESSING = "processing"
        SUCCEEDED = "succeeded"
        PARTIAL = "partial"
        FAILED = "failed"

    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    file_name = models.CharField(max_length=500)
    sha256 = models.CharField(max_length=64, blank=True)
    detected_format = models.CharField(max_length=50, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    rows_total = models.PositiveIntegerField(default=0)
    rows_ingested = models.PositiveIntegerField(default=0)
    rows_rejected = models.PositiveIntegerField(default=0)
    errors = models.JSONField(default=list, blank=True)

    class Meta(TenantModel.Meta):
        db_table = "metric_ingestion_runs"
        constraints = [
            models.UniqueConstraint(fields=["organization", "id"], name="runs_org_id_uniq"),
        ]

    def __str__(self) -> str:
        return self.file_name


class DailyDeveloperMetric(TenantModel):
    developer_identity = models.ForeignKey(
        DeveloperIdentity, on_delete=models.CASCADE, related_name="daily_metrics"
    )
    date = models.DateField()
    tool = models.CharField(max_length=50)
    suggestions = models.PositiveIntegerField(default=0)
    acceptances = models.PositiveIntegerField(default=0)
    completions = models.PositiveIntegerField(default=0)
    sessions = models.PositiveIntegerField(default=0)
    extras = models.JSONField(default=dict, blank=True)
    ingestion_run = models.ForeignKey(
        MetricIngestionRun, on_delete=models.PROTECT, related_name="+"
    )

    class Meta(TenantModel.Meta):
        db_table = "daily_developer_metrics"
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "developer_identity", "date", "tool"],
                name="daily_metrics_identity_day_tool_uniq",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.developer_identity_id} {self.date} {self.tool}"
