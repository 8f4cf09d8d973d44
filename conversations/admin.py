from django.contrib import admin

from conversations.models import (
    CampaignAnalysis,
    Conversation,
    ConversationAnalysis,
    ConversationNumbering,
    Message,
)
from tap.admin import ReadOnlyAdmin, ServiceModelAdmin


@admin.register(Conversation)
class ConversationAdmin(ServiceModelAdmin):
    list_display = (
        "id",
        "number",
        "campaign",
        "organization",
        "status",
        "last_activity_at",
        "ended_at",
    )
    list_filter = ("status",)
    search_fields = ("id", "campaign__name", "participant__email")
    list_select_related = ("campaign", "organization")
    raw_id_fields = ("campaign", "participant")


@admin.register(Message)
class MessageAdmin(ServiceModelAdmin):
    list_display = ("created_at", "conversation", "sender", "model", "tokens_in", "tokens_out")
    list_filter = ("sender",)
    search_fields = ("conversation__id", "client_key")
    raw_id_fields = ("conversation",)


@admin.register(CampaignAnalysis)
class CampaignAnalysisAdmin(ServiceModelAdmin):
    list_display = ("campaign", "organization", "generated_at", "input_hash")
    search_fields = ("campaign__name",)
    list_select_related = ("campaign", "organization")
    raw_id_fields = ("campaign",)


@admin.register(ConversationAnalysis)
class ConversationAnalysisAdmin(ServiceModelAdmin):
    list_display = ("conversation", "organization", "engine", "updated_at", "tokens_in")
    list_filter = ("engine",)
    search_fields = ("conversation__id",)
    list_select_related = ("conversation", "organization")
    raw_id_fields = ("conversation",)


@admin.register(ConversationNumbering)
class ConversationNumberingAdmin(ReadOnlyAdmin):
    """Written by the database only (conversations migration 0006): shown, never edited."""

    list_display = ("campaign", "organization", "last_number", "updated_at")
    search_fields = ("campaign__name",)
    list_select_related = ("campaign", "organization")
