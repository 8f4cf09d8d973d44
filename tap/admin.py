"""Django admin for staff: every tenant model is read and written through the `service`
connection (BYPASSRLS), never the request's app-role connection."""

from django.contrib import admin, messages
from django.utils import timezone

from tap.models import OutboxJob

SERVICE_DB = "service"


class ServiceAdminMixin:
    """Staff work across organisations: use the privileged service connection (also for
    users, whose deletion cascades into tenant tables the app role cannot see)."""

    def get_queryset(self, request):
        manager = getattr(self.model, "all_objects", self.model._base_manager)
        return manager.using(SERVICE_DB).all()

    def save_model(self, request, obj, form, change):
        obj.save(using=SERVICE_DB)

    def delete_model(self, request, obj):
        obj.delete(using=SERVICE_DB)

    def delete_queryset(self, request, queryset):
        queryset.using(SERVICE_DB).delete()

    def formfield_for_foreignkey(self, db_field, request, **kwargs):
        related = db_field.related_model
        manager = getattr(related, "all_objects", related._base_manager)
        kwargs.setdefault("queryset", manager.using(SERVICE_DB).all())
        return super().formfield_for_foreignkey(db_field, request, **kwargs)


class ServiceModelAdmin(ServiceAdminMixin, admin.ModelAdmin):
    list_per_page = 50
    show_full_result_count = False


class ReadOnlyAdmin(ServiceModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False


@admin.register(OutboxJob)
class OutboxJobAdmin(ServiceModelAdmin):
    list_display = (
        "task",
        "queue",
        "status",
        "attempts",
        "organization_id",
        "created_at",
        "available_at",
    )
    list_filter = ("status", "queue", "task")
    search_fields = ("id", "task", "organization_id", "last_error")
    readonly_fields = [f.name for f in OutboxJob._meta.fields]
    date_hierarchy = "created_at"
    actions = ["requeue"]

    def has_add_permission(self, request):
        return False

    @admin.action(description="Run again (reset attempts)")
    def requeue(self, request, queryset):
        count = (
            queryset.using(SERVICE_DB)
            .filter(status__in=["dead", "done"])
            .update(
                status="pending", attempts=0, available_at=timezone.now(), lease_expires_at=None
            )
        )
        messages.success(request, f"{count} job(s) queued again.")
