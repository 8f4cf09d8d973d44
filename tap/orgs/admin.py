from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin

from tap.admin import ReadOnlyAdmin, ServiceAdminMixin, ServiceModelAdmin
from tap.orgs.models import AuditEvent, Invitation, Organization, OrganizationMember, User


@admin.register(User)
class UserAdmin(ServiceAdminMixin, DjangoUserAdmin):
    ordering = ("email",)
    list_display = ("email", "name", "is_active", "is_staff", "date_joined", "last_login")
    list_filter = ("is_active", "is_staff", "is_superuser")
    search_fields = ("email", "name")
    fieldsets = (
        (None, {"fields": ("email", "name", "password")}),
        ("Access", {"fields": ("is_active", "is_staff", "is_superuser", "groups")}),
        ("Dates", {"fields": ("last_login", "date_joined")}),
    )
    add_fieldsets = (
        (None, {"classes": ("wide",), "fields": ("email", "name", "password1", "password2")}),
    )
    filter_horizontal = ("groups",)


class MemberInline(admin.TabularInline):
    model = OrganizationMember
    fk_name = "organization"
    extra = 0
    fields = ("user", "role", "created_at")
    readonly_fields = ("created_at",)
    autocomplete_fields = ("user",)

    def get_queryset(self, request):
        return OrganizationMember.all_objects.using("service").select_related("user")


@admin.register(Organization)
class OrganizationAdmin(ServiceModelAdmin):
    list_display = ("name", "slug", "created_at")
    search_fields = ("name", "slug")
    prepopulated_fields = {"slug": ("name",)}
    inlines = [MemberInline]


@admin.register(OrganizationMember)
class OrganizationMemberAdmin(ServiceModelAdmin):
    list_display = ("user", "organization", "role", "created_at")
    list_filter = ("role",)
    search_fields = ("user__email", "organization__name", "organization__slug")
    list_select_related = ("user", "organization")
    autocomplete_fields = ("user", "organization")


@admin.register(Invitation)
class InvitationAdmin(ServiceModelAdmin):
    list_display = (
        "email",
        "organization",
        "role",
        "email_status",
        "created_at",
        "expires_at",
        "accepted_at",
        "revoked_at",
    )
    list_filter = ("role", "email_status")
    search_fields = ("email", "organization__name")
    list_select_related = ("organization",)
    readonly_fields = ("accepted_at", "accepted_by", "invited_by")


@admin.register(AuditEvent)
class AuditEventAdmin(ReadOnlyAdmin):
    list_display = ("created_at", "organization", "actor", "action", "target_type", "target_id")
    list_filter = ("action",)
    search_fields = ("action", "actor__email", "organization__name", "target_id")
    list_select_related = ("organization", "actor")
    date_hierarchy = "created_at"
