from django.contrib import admin

from metrics.models import (
    CopilotSeat,
    DailyDeveloperMetric,
    DeveloperIdentity,
    DeveloperTeam,
    MetricApiKey,
    MetricIngestionRun,
)
from tap.admin import ServiceModelAdmin


@admin.register(DeveloperIdentity)
class DeveloperIdentityAdmin(ServiceModelAdmin):
    list_display = ("display_name", "github_login", "email", "organization")
    search_fields = ("display_name", "github_login", "email")
    list_select_related = ("organization",)


@admin.register(DailyDeveloperMetric)
class DailyDeveloperMetricAdmin(ServiceModelAdmin):
    list_display = (
        "date",
        "tool",
        "developer_identity",
        "organization",
        "suggestions",
        "acceptances",
        "completions",
        "sessions",
    )
    list_filter = ("tool",)
    search_fields = ("developer_identity__github_login", "developer_identity__email")
    list_select_related = ("developer_identity", "organization")
    raw_id_fields = ("developer_identity", "ingestion_run")
    date_hierarchy = "date"


@admin.register(MetricIngestionRun)
class MetricIngestionRunAdmin(ServiceModelAdmin):
    list_display = (
        "file_name",
        "organization",
        "detected_format",
        "status",
        "rows_total",
        "rows_ingested",
        "rows_rejected",
        "created_at",
    )
    list_filter = ("status", "detected_format")
    search_fields = ("file_name", "sha256")
    list_select_related = ("organization",)


@admin.register(CopilotSeat)
class CopilotSeatAdmin(ServiceModelAdmin):
    list_display = ("developer_identity", "organization", "plan_type", "last_activity_at")
    search_fields = ("developer_identity__github_login",)
    list_select_related = ("developer_identity", "organization")
    raw_id_fields = ("developer_identity", "ingestion_run")


@admin.register(DeveloperTeam)
class DeveloperTeamAdmin(ServiceModelAdmin):
    list_display = ("team", "developer_identity", "source", "organization")
    list_filter = ("source",)
    search_fields = ("team", "developer_identity__github_login")
    list_select_related = ("developer_identity", "organization")
    raw_id_fields = ("developer_identity",)


@admin.register(MetricApiKey)
class MetricApiKeyAdmin(ServiceModelAdmin):
    # The hash is useless to staff and never shown; revoking is the owners' page.
    list_display = ("name", "prefix", "organization", "created_at", "last_used_at", "revoked_at")
    search_fields = ("name", "prefix")
    list_select_related = ("organization",)
    exclude = ("key_hash",)
    readonly_fields = ("prefix", "last_used_at")
