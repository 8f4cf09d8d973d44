"""Conversations, messages and the analysis cache (skeleton: later issues build behaviour)."""

from django.db import models

from tap.models import TenantModel


class Conversation(TenantModel):
    class Status(models.TextChoices):
        ACTIVE = "active"
        COMPLETED = "completed"
        ABANDONED = "abandoned"

    campaign = models.ForeignKey(
        "campaigns.Campaign", on_delete=models.CASCADE, related_name="conversations"
    )
    participant = models.OneToOneField(
        "campaigns.Participant", on_delete=models.CASCADE, related_name="conversation"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    last_activity_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    end_reason = models.CharField(max_length=200, blank=True)
    # Turn n is the participant's n-th message and the interviewer's reply to it.
    participant_turns = models.PositiveIntegerField(default=0)
    follow_ups_asked = models.PositiveIntegerField(default=0)
    awaiting_reply = models.BooleanField(default=False)
    # A calm, participant-facing note when the interviewer could not answer (they may retry).
    reply_error = models.CharField(max_length=300, blank=True)
    tokens_in_total = models.PositiveIntegerField(default=0)
    tokens_out_total = models.PositiveIntegerField(default=0)

    class Meta(TenantModel.Meta):
        db_table = "conversations"
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "id"], name="conversations_org_id_uniq"
            ),
        ]

    def __str__(self) -> str:
        return f"Conversation {self.pk}"


class Message(TenantModel):
    class Sender(models.TextChoices):
        PARTICIPANT = "participant"
        BOT = "bot"

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="messages"
    )
    sender = models.CharField(max_length=12, choices=Sender.choices)
    body = models.TextField()
    client_key = models.CharField(max_length=64)
    turn = models.PositiveIntegerField(default=0)
    model = models.CharField(max_length=100, blank=True)
    tokens_in = models.PositiveIntegerField(null=True, blank=True)
    tokens_out = models.PositiveIntegerField(null=True, blank=True)
    latency_ms = models.PositiveIntegerField(null=True, blank=True)

    class Meta(TenantModel.Meta):
        db_table = "messages"
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "conversation", "client_key"],
                name="messages_client_key_uniq",
            ),
            # Exactly one reply per participant turn, however often the reply task runs.
            models.UniqueConstraint(
                fields=["organization", "conversation", "sender", "turn"],
                name="messages_one_per_turn_uniq",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.sender} message {self.pk}"


class CampaignAnalysis(TenantModel):
    campaign = models.OneToOneField(
        "campaigns.Campaign", on_delete=models.CASCADE, related_name="analysis"
    )
    key_findings = models.JSONField(default=list, blank=True)
    groupings = models.JSONField(default=dict, blank=True)
    sentiment_distribution = models.JSONField(default=dict, blank=True)
    themes = models.JSONField(default=list, blank=True)
    executive_summary = models.TextField(blank=True)
    input_hash = models.CharField(max_length=64, blank=True)
    generated_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantModel.Meta):
        db_table = "campaign_analysis"
        verbose_name_plural = "campaign analyses"

    def __str__(self) -> str:
        return f"Analysis of {self.campaign_id}"
