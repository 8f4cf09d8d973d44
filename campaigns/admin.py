from django.contrib import admin

from campaigns.models import Campaign, CampaignEmail, Participant, ParticipantLink
from tap.admin import ServiceModelAdmin


@admin.register(Campaign)
class CampaignAdmin(ServiceModelAdmin):
    list_display = ("name", "organization", "status", "created_at")
    list_filter = ("status",)
    search_fields = ("name", "organization__name", "mission")
    list_select_related = ("organization",)


@admin.register(Participant)
class ParticipantAdmin(ServiceModelAdmin):
    list_display = ("email", "name", "campaign", "organization", "status", "invited_at")
    list_filter = ("status",)
    search_fields = ("email", "name", "campaign__name")
    list_select_related = ("campaign", "organization")
    raw_id_fields = ("campaign",)


@admin.register(ParticipantLink)
class ParticipantLinkAdmin(ServiceModelAdmin):
    """Only hashes are stored: staff can revoke links here, never read them."""

    list_display = ("participant", "organization", "created_at", "last_used_at", "revoked_at")
    list_filter = ("revoked_at",)
    search_fields = ("participant__email",)
    list_select_related = ("participant", "organization")
    raw_id_fields = ("participant",)
    readonly_fields = ("token_hash", "last_used_at")


@admin.register(CampaignEmail)
class CampaignEmailAdmin(ServiceModelAdmin):
    list_display = (
        "participant",
        "kind",
        "sequence",
        "status",
        "attempts",
        "sent_at",
        "organization",
    )
    list_filter = ("kind", "status")
    search_fields = ("participant__email", "error")
    list_select_related = ("participant", "organization")
    raw_id_fields = ("participant",)
