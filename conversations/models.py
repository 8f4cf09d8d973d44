"""Conversations, messages and the analysis cache (skeleton: later issues build behaviour)."""

from django.db import models

from tap.models import TenantModel

# `end_reason` of the conversations a campaign's completion closed (conversations.tasks).
CAMPAIGN_CLOSED = "campaign closed"


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
    # The pseudonym number ("Participant 7"): the conversation's place in its campaign, given
    # by the database as the row is inserted (`ConversationNumbering`, migration 0006) and
    # never given again, so it names the same conversation on every page, in every export and
    # in every analysis — also after others were erased.
    number = models.PositiveIntegerField(editable=False)

    class Meta(TenantModel.Meta):
        db_table = "conversations"
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "id"], name="conversations_org_id_uniq"
            ),
            models.UniqueConstraint(
                fields=["campaign", "number"], name="conversations_campaign_number_uniq"
            ),
        ]

    def __str__(self) -> str:
        return f"Conversation {self.pk}"

    @property
    def status_label(self) -> str:
        """As the creator's pages say it: a conversation the campaign's end cut short is
        not one the participant finished."""
        if self.status == self.Status.COMPLETED and self.end_reason == CAMPAIGN_CLOSED:
            return "Closed unfinished"
        return self.get_status_display()


class ConversationNumbering(TenantModel):
    """The last pseudonym number a campaign gave. Its own row, not a column of the campaign,
    so that starting a conversation does not lock the campaign (transitions lock it). Written
    only by the trigger on `conversations` (migration 0006)."""

    campaign = models.OneToOneField(
        "campaigns.Campaign", on_delete=models.CASCADE, related_name="+"
    )
    last_number = models.PositiveIntegerField()

    class Meta(TenantModel.Meta):
        db_table = "conversation_numbering"


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
    """A campaign's analysis: the last good result, and the state of the latest run.

    The result fields (findings, themes, groupings, sentiment, summary, input_hash, engine,
    generated_at …) always hold the last *ready* result; `status`, `progress_*`, `error` and
    `pending_hash` describe the latest run. So a run that fails leaves the previous result on
    the page next to its reason, and a run in progress never blanks it."""

    class Status(models.TextChoices):
        PENDING = "pending"
        RUNNING = "running"
        READY = "ready"
        FAILED = "failed"

    campaign = models.OneToOneField(
        "campaigns.Campaign", on_delete=models.CASCADE, related_name="analysis"
    )
    key_findings = models.JSONField(default=list, blank=True)
    # {theme id: [conversation id, …]}
    groupings = models.JSONField(default=dict, blank=True)
    # {"counts": {label: n}, "mean": x, "histogram": [n per tenth of -1..1]}
    sentiment_distribution = models.JSONField(default=dict, blank=True)
    # [{"id", "label", "description", "keywords", "count", "share"}], largest first
    themes = models.JSONField(default=list, blank=True)
    # {conversation id: {"number", "status", "score", "label", "themes": [theme id]}}
    conversations = models.JSONField(default=dict, blank=True)
    executive_summary = models.TextField(blank=True)
    # sha256 over the included conversations' message ids and edit times, the options and the
    # engine version: equal hash = nothing to recompute.
    input_hash = models.CharField(max_length=64, blank=True)
    options = models.JSONField(default=dict, blank=True)
    engine = models.CharField(max_length=20, blank=True)
    # What the engine needs to update this result in place (offline engine: the themes' term
    # centroids), so a refresh after a few changes places them without re-clustering.
    engine_state = models.JSONField(default=dict, blank=True)
    engine_version = models.CharField(max_length=20, blank=True)
    model = models.CharField(max_length=100, blank=True)
    conversation_count = models.PositiveIntegerField(default=0)
    # [{"id", "number"}] of included conversations the engine could not analyse (its answers
    # were invalid twice), left out of this result; the next refresh asks about them again.
    unanalysed = models.JSONField(default=list, blank=True)
    # When the inputs of the current result were read (the stale notice counts changes after).
    inputs_at = models.DateTimeField(null=True, blank=True)
    generated_at = models.DateTimeField(null=True, blank=True)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)
    cache_read_tokens = models.PositiveIntegerField(default=0)
    cost_usd = models.DecimalField(max_digits=10, decimal_places=4, default=0)
    # The latest run.
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    pending_hash = models.CharField(max_length=64, blank=True)
    progress_done = models.PositiveIntegerField(default=0)
    progress_total = models.PositiveIntegerField(default=0)
    error = models.TextField(blank=True)
    requested_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)

    class Meta(TenantModel.Meta):
        db_table = "campaign_analysis"
        verbose_name_plural = "campaign analyses"
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "id"], name="campaign_analysis_org_id_uniq"
            ),
            models.CheckConstraint(
                condition=models.Q(status__in=["pending", "running", "ready", "failed"]),
                name="campaign_analysis_status_valid",
            ),
        ]

    def __str__(self) -> str:
        return f"Analysis of {self.campaign_id}"

    @property
    def has_result(self) -> bool:
        return self.generated_at is not None

    @property
    def in_progress(self) -> bool:
        return self.status in (self.Status.PENDING, self.Status.RUNNING)

    @property
    def progress_percent(self) -> int:
        if not self.progress_total:
            return 0
        return min(100, round(100 * self.progress_done / self.progress_total))


class ConversationAnalysis(TenantModel):
    """One conversation's extraction by one engine, keyed by that conversation's own hash: a
    refresh re-extracts only conversations whose messages changed."""

    conversation = models.ForeignKey(
        Conversation, on_delete=models.CASCADE, related_name="analyses"
    )
    engine = models.CharField(max_length=20)
    input_hash = models.CharField(max_length=64)
    # Engine-specific: sentiment, themes or terms, quotes with message ids.
    result = models.JSONField(default=dict)
    tokens_in = models.PositiveIntegerField(default=0)
    tokens_out = models.PositiveIntegerField(default=0)

    class Meta(TenantModel.Meta):
        db_table = "conversation_analysis"
        constraints = [
            models.UniqueConstraint(
                fields=["organization", "conversation", "engine"],
                name="conversation_analysis_once_uniq",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.engine} analysis of {self.conversation_id}"
