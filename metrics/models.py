"""Developer identities, daily metrics, ingestion runs, the Copilot seat roster, teams and
organisation API keys.

Every table is a tenant table (RLS in the migrations); uniqueness always includes the
organisation. `DailyDeveloperMetric` is unique on (organisation, identity, day, tool): two tools
on one day never overwrite each other, and a re-upload replaces instead of double-counting."""

from django.conf import settings
from django.contrib.postgres.fields import ArrayField
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from tap.models import TenantModel

TOOL_COPILOT = "copilot"
TOOL_CLAUDE_CODE = "claude_code"
TOOL_LABELS = {TOOL_COPILOT: "GitHub Copilot", TOOL_CLAUDE_CODE: "Claude Code"}


def tool_label(tool: str) -> str:
    return TOOL_LABELS.get(tool, tool)


class DeveloperIdentity(TenantModel):
    """One canonical developer in an organisation, known by any of its identifiers."""

    display_name = models.CharField(max_length=200, blank=True)
    github_login = models.CharField(max_length=100, blank=True)
    github_user_id = models.BigIntegerField(null=True, blank=True)
    email = models.EmailField(max_length=254, blank=True)
    # Claude Code usage by an API key rather than a person: named by the key.
    api_key_name = models.CharField(max_length=200, blank=True)
    # Identifiers of identities merged into this one (kept so the history reads right).
    aliases = models.JSONField(default=list, blank=True)
    # An admin looked at it on the unmatched page and said it stands alone.
    reviewed = models.BooleanField(default=False)

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
            models.UniqueConstraint(
                fields=["organization", "github_user_id"],
                condition=models.Q(github_user_id__isnull=False),
                name="identities_org_github_id_uniq",
            ),
            models.UniqueConstraint(
                "organization",
                Lower("api_key_name"),
                condition=~models.Q(api_key_name=""),
                name="identities_org_api_key_uniq",
            ),
        ]

    def __str__(self) -> str:
        return self.label

    @property
    def key_only(self) -> bool:
        """Known only by an API key (a CI job's, or anyone's): not counted as a developer in
        tiers or toward the five a member needs to see a figure. `KEY_ONLY` in queries."""
        return bool(self.api_key_name) and not (self.github_login or self.email)

    @property
    def label(self) -> str:
        if self.key_only:
            return f"API key “{self.api_key_name}”"
        return self.display_name or self.github_login or self.email or str(self.pk)


# `DeveloperIdentity.key_only`, for the ORM and for SQL (`{t}`: the table's alias).
KEY_ONLY = models.Q(github_login="", email="") & ~models.Q(api_key_name="")
KEY_ONLY_SQL = "{t}.api_key_name <> '' AND {t}.github_login = '' AND {t}.email = ''"


class MetricApiKey(TenantModel):
    """An organisation API key for pushing exports (`Authorization: Bearer …`).

    The secret is shown once when created; only its SHA-256 is stored."""

    name = models.CharField(max_length=100)
    prefix = models.CharField(max_length=12)
    key_hash = models.CharField(max_length=64, unique=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    last_used_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantModel.Meta):
        db_table = "metric_api_keys"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "id"], name="api_keys_org_id_uniq"),
            # One live key per name: which one to revoke is never in doubt, and a form sent
            # twice (a refresh after creating) makes no second key nobody has seen.
            models.UniqueConstraint(
                "organization",
                Lower("name"),
                condition=models.Q(revoked_at__isnull=True),
                name="api_keys_live_name_uniq",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"


class MetricIngestionRun(TenantModel):
    class Status(models.TextChoices):
        PENDING = "pending"
        PROCESSING = "processing"
        SUCCEEDED = "succeeded"
        PARTIAL = "partial"
        FAILED = "failed"

    class Source(models.TextChoices):
        UPLOAD = "upload"
        COMMAND = "command"
        API = "api"

    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    api_key = models.ForeignKey(
        MetricApiKey, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    source = models.CharField(max_length=10, choices=Source.choices, default=Source.UPLOAD)
    # Display name: the file, or "a.ndjson + 2 more"; `files` lists each one.
    file_name = models.CharField(max_length=500)
    # One file: its SHA-256. Several: the SHA-256 of their sorted hashes.
    sha256 = models.CharField(max_length=64, blank=True)
    files = models.JSONField(default=list, blank=True)
    detected_format = models.CharField(max_length=50, blank=True)
    skip_invalid = models.BooleanField(default=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    rows_total = models.PositiveIntegerField(default=0)
    rows_ingested = models.PositiveIntegerField(default=0)
    rows_rejected = models.PositiveIntegerField(default=0)
    # Of the daily rows this run wrote: how many replaced different values from an earlier run,
    # and how many were already there with the same values (a re-upload changes nothing).
    rows_new = models.PositiveIntegerField(default=0)
    rows_replaced = models.PositiveIntegerField(default=0)
    rows_unchanged = models.PositiveIntegerField(default=0)
    identities_created = models.PositiveIntegerField(default=0)
    # [{"file", "line", "reason"}], capped at TAP_METRICS_MAX_ERRORS; the rest only counted.
    errors = models.JSONField(default=list, blank=True)
    errors_omitted = models.PositiveIntegerField(default=0)
    # A sentence for the person: why it failed, or what happened ("nothing changed").
    message = models.TextField(blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantModel.Meta):
        db_table = "metric_ingestion_runs"
        ordering = ["-created_at"]
        indexes = [
            models.Index(fields=["organization", "-created_at"], name="runs_org_created_idx"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["organization", "id"], name="runs_org_id_uniq"),
            models.CheckConstraint(
                condition=models.Q(
                    status__in=["pending", "processing", "succeeded", "partial", "failed"]
                ),
                name="runs_status_valid",
            ),
            models.CheckConstraint(
                condition=models.Q(source__in=["upload", "command", "api"]),
                name="runs_source_valid",
            ),
            # One queued upload of a file at a time (`services.run_queue`): a second click is
            # the first run. The command processes its runs as it makes them.
            models.UniqueConstraint(
                fields=["organization", "sha256", "skip_invalid"],
                condition=models.Q(status__in=["pending", "processing"])
                & ~models.Q(source="command"),
                name="runs_one_queued_per_file",
            ),
        ]

    def __str__(self) -> str:
        return self.file_name

    @property
    def finished(self) -> bool:
        return self.status in (self.Status.SUCCEEDED, self.Status.PARTIAL, self.Status.FAILED)

    @property
    def format_label(self) -> str:
        from metrics.parsers import FORMAT_LABELS  # noqa: PLC0415 - parsers import this module

        return FORMAT_LABELS.get(self.detected_format, self.detected_format)

    @property
    def duration_seconds(self) -> float | None:
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    def summary(self) -> dict:
        """The run as the command's --json and the API report it."""
        return {
            "run_id": str(self.pk),
            "status": self.status,
            "format": self.detected_format,
            "files": [f.get("name") for f in self.files],
            "rows_total": self.rows_total,
            "rows_ingested": self.rows_ingested,
            "rows_rejected": self.rows_rejected,
            "rows_new": self.rows_new,
            "rows_replaced": self.rows_replaced,
            "rows_unchanged": self.rows_unchanged,
            "identities_created": self.identities_created,
            "message": self.message,
            "errors": self.errors,
            "errors_omitted": self.errors_omitted,
            "duration_seconds": self.duration_seconds,
        }


class JSONTextField(models.JSONField):
    """JSON kept as PostgreSQL `json` (its text, checked on the way in) instead of `jsonb`.

    For values stored on every row and never queried inside: a daily row's extras. Reading
    Copilot's extras (about 700 characters of breakdowns) into jsonb took 17 us per row, four
    times the check `json` makes, and stored them in 1.8 times the space. No SQL looks into
    them (jsonb's operators and indexes are what this gives up); Python gets the same dicts."""

    def db_type(self, connection):
        return "json"

    def from_db_value(self, value, expression, connection):
        # psycopg has already parsed it (Django turns that off for jsonb only): a str here is
        # a JSON string, not JSON text to parse again.
        return value


class DailyDeveloperMetric(TenantModel):
    # The biggest table: every index and every foreign-key trigger costs on each ingested
    # row. Nothing reads it by day or by tool (the dashboards read the rollups that migration
    # 0008's triggers keep), by created_at or by run: its indexes are the primary key, the
    # unique (organisation, identity, day, tool) and Django's on the identity; the composite
    # tenant keys (organisation, identity) and (organisation, run) of migration 0002 enforce
    # what Django's single-column constraints would, so those are left out.
    organization = models.ForeignKey(
        "orgs.Organization",
        on_delete=models.CASCADE,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    developer_identity = models.ForeignKey(
        DeveloperIdentity,
        on_delete=models.CASCADE,
        related_name="daily_metrics",
        db_constraint=False,
    )
    date = models.DateField()
    tool = models.CharField(max_length=50)
    suggestions = models.PositiveIntegerField(default=0)
    acceptances = models.PositiveIntegerField(default=0)
    completions = models.PositiveIntegerField(default=0)
    sessions = models.PositiveIntegerField(default=0)
    extras = JSONTextField(default=dict, blank=True)
    ingestion_run = models.ForeignKey(
        MetricIngestionRun,
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )

    class Meta(TenantModel.Meta):
        db_table = "daily_developer_metrics"
        # What still reads daily rows — one developer's days, a seat's last Copilot day, the
        # rows of one key — goes through the unique index below.
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "developer_identity", "date", "tool"],
                name="daily_metrics_identity_day_tool_uniq",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.developer_identity_id} {self.date} {self.tool}"


class DailyToolRollup(TenantModel):
    """Per organisation, day and tool: how many developers have a daily row, and the sums of
    their counters — the dashboards' per-day charts, KPIs, tools and freshness.

    Derived data, written only by the database: statement-level triggers on
    `daily_developer_metrics` (migration 0008) add each statement's changes as deltas in the
    same transaction, so every write path keeps it exact. Rows whose count falls to zero are
    deleted. The foreign keys are declared for the ORM only (DO_NOTHING, no constraint): rows
    of a deleted identity or organisation leave with the daily rows they summarise."""

    id = None
    created_at = None
    updated_at = None
    pk = models.CompositePrimaryKey("organization", "date", "tool")
    organization = models.ForeignKey(
        "orgs.Organization",
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    date = models.DateField()
    tool = models.CharField(max_length=50)
    developers = models.IntegerField()
    suggestions = models.BigIntegerField()
    acceptances = models.BigIntegerField()
    completions = models.BigIntegerField()
    sessions = models.BigIntegerField()

    class Meta(TenantModel.Meta):
        db_table = "daily_tool_rollups"

    def __str__(self) -> str:
        return f"{self.date} {self.tool}"


class WeeklyDeveloperToolRollup(TenantModel):
    """Per organisation, ISO week (its Monday), developer and tool: which days of the week
    have a daily row (`days`, bit k = Monday + k), the week's totals, and running totals of
    the counters within the week: `totals_upto[c][k + 1]` is counter c (suggestions,
    acceptances, completions, sessions; SQL arrays count from 1) summed over days 0..k. The sum
    over any run of days inside a week is two array reads, so a range that starts or ends
    mid-week stays exact (the weeks wholly inside read the plain totals: cheaper).
    Distinct developers per tool and per-developer sums come from here: a seventh of the
    daily rows.

    Written only by the database, like `DailyToolRollup`."""

    id = None
    created_at = None
    updated_at = None
    pk = models.CompositePrimaryKey("organization", "week", "developer_identity", "tool")
    organization = models.ForeignKey(
        "orgs.Organization",
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    week = models.DateField()
    developer_identity = models.ForeignKey(
        DeveloperIdentity,
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    tool = models.CharField(max_length=50)
    days = models.SmallIntegerField()
    suggestions = models.BigIntegerField()
    acceptances = models.BigIntegerField()
    completions = models.BigIntegerField()
    sessions = models.BigIntegerField()
    totals_upto = ArrayField(ArrayField(models.BigIntegerField(), size=7), size=4)

    class Meta(TenantModel.Meta):
        db_table = "weekly_developer_tool_rollups"

    def __str__(self) -> str:
        return f"{self.developer_identity_id} {self.week} {self.tool}"


class WeeklyDeveloperRollup(TenantModel):
    """Per organisation, ISO week and developer, whatever the tool: on how many tools each day
    of the week has a row (`tools_per_day`, additive, so concurrent writers compose), the days
    with any (`days`, recomputed from those counts on every write), and the week's totals.
    Distinct active developers across tools — per day, per week, per cohort — and their sums
    are one narrow row per developer and week; a range that cuts a week reads that week from
    `WeeklyDeveloperToolRollup`.

    Written only by the database, like `DailyToolRollup`."""

    id = None
    created_at = None
    updated_at = None
    pk = models.CompositePrimaryKey("organization", "week", "developer_identity")
    organization = models.ForeignKey(
        "orgs.Organization",
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    week = models.DateField()
    developer_identity = models.ForeignKey(
        DeveloperIdentity,
        on_delete=models.DO_NOTHING,
        related_name="+",
        db_index=False,
        db_constraint=False,
    )
    tools_per_day = ArrayField(models.SmallIntegerField(), size=7)
    days = models.SmallIntegerField()
    suggestions = models.BigIntegerField()
    acceptances = models.BigIntegerField()
    completions = models.BigIntegerField()
    sessions = models.BigIntegerField()

    class Meta(TenantModel.Meta):
        db_table = "weekly_developer_rollups"

    def __str__(self) -> str:
        return f"{self.developer_identity_id} {self.week}"


class CopilotSeat(TenantModel):
    """The licensed roster from a Copilot seats export: who holds a seat, and their last
    activity. No daily counts are ever derived from it."""

    developer_identity = models.ForeignKey(
        DeveloperIdentity, on_delete=models.CASCADE, related_name="seats"
    )
    assigned_at = models.DateTimeField(null=True, blank=True)
    last_activity_at = models.DateTimeField(null=True, blank=True)
    last_activity_editor = models.CharField(max_length=200, blank=True)
    last_authenticated_at = models.DateTimeField(null=True, blank=True)
    plan_type = models.CharField(max_length=50, blank=True)
    assigning_team = models.CharField(max_length=200, blank=True)
    pending_cancellation_date = models.DateField(null=True, blank=True)
    ingestion_run = models.ForeignKey(
        MetricIngestionRun, on_delete=models.DO_NOTHING, related_name="+"
    )

    class Meta(TenantModel.Meta):
        db_table = "copilot_seats"
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "developer_identity"], name="seats_org_identity_uniq"
            ),
        ]

    def __str__(self) -> str:
        return str(self.developer_identity_id)


class DeveloperTeam(TenantModel):
    """A developer's membership of a team, for cohorts: from the identity map or from
    Copilot's user-teams report."""

    class Source(models.TextChoices):
        IDENTITY_MAP = "identity_map", "Identity map"
        COPILOT = "copilot", "Copilot user-teams"

    developer_identity = models.ForeignKey(
        DeveloperIdentity, on_delete=models.CASCADE, related_name="teams"
    )
    team = models.CharField(max_length=200)
    source = models.CharField(max_length=20, choices=Source.choices)
    # Copilot: the day of the user-teams report that listed the membership. A report older
    # than the team's latest changes nothing (uploaded late, it would undo later moves).
    as_of = models.DateField(null=True, blank=True)

    class Meta(TenantModel.Meta):
        db_table = "developer_teams"
        constraints = [
            models.UniqueConstraint(
                "organization",
                "developer_identity",
                Lower("team"),
                name="teams_org_identity_team_uniq",
            ),
            models.CheckConstraint(
                condition=models.Q(source__in=["identity_map", "copilot"]),
                name="teams_source_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.team
