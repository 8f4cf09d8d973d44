"""Campaigns and their participants (skeleton: the campaigns issue builds the behaviour)."""

from django.conf import settings as django_settings
from django.db import models

from tap.models import TenantModel


class Campaign(TenantModel):
    class Status(models.TextChoices):
        DRAFT = "draft"
        ACTIVE = "active"
        PAUSED = "paused"
        COMPLETED = "completed"
        ARCHIVED = "archived"

    name = models.CharField(max_length=200)
    mission = models.TextField()
    mission_summary = models.TextField(blank=True)
    opening_question = models.TextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    settings = models.JSONField(default=dict, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )

    class Meta(TenantModel.Meta):
        db_table = "campaigns"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "id"], name="campaigns_org_id_uniq"),
            models.CheckConstraint(
                condition=models.Q(
                    status__in=["draft", "active", "paused", "completed", "archived"]
                ),
                name="campaigns_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class Participant(TenantModel):
    class Status(models.TextChoices):
        INVITED = "invited"
        OPENED = "opened"
        IN_PROGRESS = "in_progress", "In progress"
        COMPLETED = "completed"
        DECLINED = "declined"
        BOUNCED = "bounced"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="participants")
    email = models.EmailField(max_length=254)
    name = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.INVITED)
    invited_at = models.DateTimeField(null=True, blank=True)
    reminded_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantModel.Meta):
        db_table = "participants"
        ordering = ["email"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "campaign", "email"],
                name="participants_campaign_email_uniq",
            ),
            models.UniqueConstraint(fields=["organization", "id"], name="participants_org_id_uniq"),
        ]

    def __str__(self) -> str:
        return self.email
