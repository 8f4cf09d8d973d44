from django.contrib import admin

from metrics.models import DailyDeveloperMetric, DeveloperIdentity, MetricIngestionRun
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
