from django import forms
from django.contrib import admin
from django.contrib.auth.admin import UserAdmin as DjangoUserAdmin
from django.core.exceptions import ValidationError

from tap.admin import ReadOnlyAdmin, ServiceAdminMixin, ServiceModelAdmin
from tap.orgs.models import AuditEvent, Invitation, Organization, OrganizationMember, Role, User
from tap.orgs.services import OWNER_NEEDED


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

    def has_delete_permission(self, request, obj=None):
        # Deleting a user removes their memberships: never an organisation's last owner (its
        # members could then never manage it). One at a time, as for members.
        if obj is not None and _sole_owner_somewhere(obj):
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


def _sole_owner_somewhere(user: User) -> bool:
    owned = OrganizationMember.all_objects.using("service").filter(user=user, role=Role.OWNER)
    return any(not _other_owners(member) for member in owned)


def _other_owners(member: OrganizationMember) -> bool:
    return (
        OrganizationMember.all_objects.using("service")
        .filter(organization_id=member.organization_id, role=Role.OWNER)
        .exclude(pk=member.pk)
        .exists()
    )


class MemberInlineFormSet(forms.BaseInlineFormSet):
    """Staff may change roles and remove members, but never leave an organisation that has
    an owner without one (the app's own pages refuse the same)."""

    def clean(self):
        super().clean()
        if any(self.errors):
            return
        # Each form's instance already holds its new values: the stored role is its initial.
        had_owner = any(form.initial.get("role") == Role.OWNER for form in self.initial_forms)
        keeps_owner = any(
            form.cleaned_data.get("role") == Role.OWNER
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE")
        )
        if had_owner and not keeps_owner:
            raise ValidationError(OWNER_NEEDED)


class MemberForm(forms.ModelForm):
    def clean(self):
        cleaned = super().clean()
        member = self.instance  # still as stored: the form's values go in after clean()
        leaves_owners = member.role == Role.OWNER and (
            cleaned.get("role") != Role.OWNER or cleaned.get("organization") != member.organization
        )
        if member.pk and leaves_owners and not _other_owners(member):
            raise ValidationError(OWNER_NEEDED)
        return cleaned


class MemberInline(admin.TabularInline):
    model = OrganizationMember
    formset = MemberInlineFormSet
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
    form = MemberForm
    list_display = ("user", "organization", "role", "created_at")
    list_filter = ("role",)
    search_fields = ("user__email", "organization__name", "organization__slug")
    list_select_related = ("user", "organization")
    autocomplete_fields = ("user", "organization")

    def has_delete_permission(self, request, obj=None):
        # One at a time, and never an organisation's last owner: the bulk action could not
        # say which of the selected rows it refused.
        if obj is not None and obj.role == Role.OWNER and not _other_owners(obj):
            return False
        return super().has_delete_permission(request, obj)

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions


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
