from django.contrib import admin

from campaigns.models import Campaign, Participant
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
