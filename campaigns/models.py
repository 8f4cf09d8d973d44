"""Campaigns, their participants, the links participants hold and the emails sent to them."""

from django.conf import settings as django_settings
from django.db import models
from django.db.models.functions import Lower

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
    # True once a person edits the summary: the AI never overwrites their words.
    mission_summary_edited = models.BooleanField(default=False)
    opening_question = models.TextField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.DRAFT)
    # Validated by campaigns.settings_schema; defaults filled in on read.
    settings = models.JSONField(default=dict, blank=True)
    closes_at = models.DateTimeField(null=True, blank=True)
    activated_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)
    archived_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        django_settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )

    class Meta(TenantModel.Meta):
        db_table = "campaigns"
        ordering = ["-created_at"]
        indexes = [
            models.Index(
                fields=["organization", "status", "-created_at"], name="campaigns_list_idx"
            ),
            models.Index(
                fields=["closes_at"],
                name="campaigns_close_due_idx",
                condition=models.Q(status__in=["active", "paused"], closes_at__isnull=False),
            ),
        ]
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

    @property
    def options(self):
        from campaigns.settings_schema import CampaignSettings  # noqa: PLC0415

        return CampaignSettings.from_json(self.settings)


class Participant(TenantModel):
    class Status(models.TextChoices):
        PENDING = "pending", "Not invited yet"
        INVITED = "invited"
        OPENED = "opened"
        IN_PROGRESS = "in_progress", "In progress"
        COMPLETED = "completed"
        DECLINED = "declined"
        BOUNCED = "bounced"

    campaign = models.ForeignKey(Campaign, on_delete=models.CASCADE, related_name="participants")
    email = models.EmailField(max_length=254)
    name = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.PENDING)
    invited_at = models.DateTimeField(null=True, blank=True)
    reminded_at = models.DateTimeField(null=True, blank=True)
    reminders_sent = models.PositiveSmallIntegerField(default=0)
    opened_at = models.DateTimeField(null=True, blank=True)
    last_activity_at = models.DateTimeField(null=True, blank=True)
    bounce_reason = models.CharField(max_length=500, blank=True)
    # The developer behind the address (metrics), matched by email; an admin may unlink a
    # wrong match, and it then stays unlinked (campaigns.identities).
    developer_identity = models.ForeignKey(
        "metrics.DeveloperIdentity",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="participants",
    )
    identity_unlinked = models.BooleanField(default=False)

    class Meta(TenantModel.Meta):
        db_table = "participants"
        ordering = ["email"]
        indexes = [
            models.Index(
                fields=["organization", "campaign", "status"], name="participants_status_idx"
            ),
        ]
        constraints = [
            models.UniqueConstraint(
                "organization", "campaign", Lower("email"), name="participants_campaign_email_uniq"
            ),
            models.UniqueConstraint(fields=["organization", "id"], name="participants_org_id_uniq"),
            models.CheckConstraint(
                condition=models.Q(
                    status__in=[
                        "pending",
                        "invited",
                        "opened",
                        "in_progress",
                        "completed",
                        "declined",
                        "bounced",
                    ]
                ),
                name="participants_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return self.email

    @property
    def display_name(self) -> str:
        return self.name or self.email


class ParticipantLink(TenantModel):
    """One emailed link. Only the SHA-256 of its token is stored, so every email carries a
    fresh token; all of a participant's links keep working until revoked."""

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="links")
    token_hash = models.CharField(max_length=64)
    revoked_at = models.DateTimeField(null=True, blank=True)
    last_used_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantModel.Meta):
        db_table = "participant_links"
        indexes = [models.Index(fields=["token_hash"], name="participant_links_hash_idx")]
        constraints = [
            models.UniqueConstraint(fields=["organization", "token_hash"], name="links_hash_uniq"),
            models.UniqueConstraint(fields=["organization", "id"], name="links_org_id_uniq"),
        ]

    def __str__(self) -> str:
        return f"link {self.pk}"


class CampaignEmail(TenantModel):
    """One email to one participant, keyed by (participant, kind, sequence): a job that runs
    twice, or is queued twice, finds the row claimed and sends nothing."""

    class Kind(models.TextChoices):
        INVITATION = "invitation"
        REMINDER = "reminder"

    class Status(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        SENT = "sent"
        FAILED = "failed"
        BOUNCED = "bounced"

    participant = models.ForeignKey(Participant, on_delete=models.CASCADE, related_name="emails")
    kind = models.CharField(max_length=12, choices=Kind.choices)
    sequence = models.PositiveSmallIntegerField()
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    sent_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)

    class Meta(TenantModel.Meta):
        db_table = "campaign_emails"
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "participant", "kind", "sequence"],
                name="campaign_emails_once_uniq",
            ),
            models.UniqueConstraint(
                fields=["organization", "id"], name="campaign_emails_org_id_uniq"
            ),
            models.CheckConstraint(
                condition=models.Q(kind__in=["invitation", "reminder"])
                & models.Q(status__in=["pending", "sending", "sent", "failed", "bounced"]),
                name="campaign_emails_kind_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} #{self.sequence} to {self.participant_id}"
