import uuid

import rules
from django.conf import settings
from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.db.models.functions import Lower
from django.utils import timezone

from tap.models import TenantModel, TimestampedModel


class UserManager(BaseUserManager):
    use_in_migrations = True

    def get_by_natural_key(self, email):
        return self.get(email__iexact=email)

    def create_user(self, email, password=None, **extra):
        if not email:
            raise ValueError("An email address is required.")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)
        user.save(using=self._db)
        return user

    def create_superuser(self, email, password=None, **extra):
        extra.update(is_staff=True, is_superuser=True)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """An account. Email is the login, unique without regard to case."""

    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    # Stored lower-cased; the Lower() constraint below also refuses case variants.
    email = models.EmailField(max_length=254, unique=True)
    name = models.CharField(max_length=150, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)

    objects = UserManager()

    EMAIL_FIELD = "email"
    USERNAME_FIELD = "email"
    REQUIRED_FIELDS = ["name"]

    class Meta:
        db_table = "users"
        constraints = [models.UniqueConstraint(Lower("email"), name="users_email_ci_uniq")]

    def __str__(self) -> str:
        return self.email

    def clean(self) -> None:
        super().clean()
        self.email = self.__class__.objects.normalize_email(self.email).lower()

    def get_short_name(self) -> str:
        return self.name or self.email.split("@")[0]

    get_full_name = get_short_name

    def has_perm(self, perm, obj=None) -> bool:
        """A permission on an organisation (the rules in */rules.py) follows the person's
        role there, for superusers too: Django's superuser shortcut would let a staff
        account that is a plain member of a customer's organisation act as its owner and
        read its per-person metrics. Model permissions (the admin) keep the shortcut."""
        if obj is not None and rules.perm_exists(perm):
            return self.is_active and rules.has_perm(perm, self, obj)
        return super().has_perm(perm, obj)


class Role(models.TextChoices):
    OWNER = "owner", "Owner"
    ADMIN = "admin", "Admin"
    MEMBER = "member", "Member"


ROLE_RANK = {Role.MEMBER: 1, Role.ADMIN: 2, Role.OWNER: 3}


class Organization(TimestampedModel):
    """A tenant. Its own row is visible to its members (policy in the migration)."""

    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=60, unique=True)
    # Transcripts (conversations and their messages) older than this many days are deleted
    # by the daily retention sweep; None keeps them.
    transcript_retention_days = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        db_table = "organizations"
        ordering = ["name"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(transcript_retention_days__isnull=True)
                | models.Q(transcript_retention_days__gte=1, transcript_retention_days__lte=3650),
                name="organizations_retention_days_range",
            ),
        ]

    def __str__(self) -> str:
        return self.name


class OrganizationMember(TenantModel):
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships"
    )
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)

    class Meta(TenantModel.Meta):
        db_table = "organization_members"
        ordering = ["created_at"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "user"], name="members_org_user_uniq"),
            models.UniqueConstraint(fields=["organization", "id"], name="members_org_id_uniq"),
            models.CheckConstraint(
                condition=models.Q(role__in=Role.values), name="members_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.user_id} in {self.organization_id} ({self.role})"

    def has_role(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


class Invitation(TenantModel):
    """An invitation to join an organisation, sent by email; single use, valid 7 days.

    The link carries a signed (not stored) token naming this row, so nothing secret is
    stored or queued; `accepted_at`/`revoked_at` make it single use."""

    class EmailStatus(models.TextChoices):
        PENDING = "pending"
        SENDING = "sending"
        SENT = "sent"
        FAILED = "failed"

    email = models.EmailField(max_length=254)
    role = models.CharField(max_length=10, choices=Role.choices, default=Role.MEMBER)
    invited_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    expires_at = models.DateTimeField()
    accepted_at = models.DateTimeField(null=True, blank=True)
    accepted_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    revoked_at = models.DateTimeField(null=True, blank=True)
    email_status = models.CharField(
        max_length=10, choices=EmailStatus.choices, default=EmailStatus.PENDING
    )

    class Meta(TenantModel.Meta):
        db_table = "organization_invitations"
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["organization", "id"], name="invitations_org_id_uniq"),
            models.CheckConstraint(
                condition=models.Q(role__in=Role.values), name="invitations_role_valid"
            ),
        ]

    def __str__(self) -> str:
        return f"Invitation of {self.email}"

    @property
    def is_open(self) -> bool:
        return (
            self.accepted_at is None
            and self.revoked_at is None
            and self.expires_at > timezone.now()
        )


class AuditEvent(TenantModel):
    """Who did what, when. Written by services; the app role may insert but never change."""

    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    action = models.CharField(max_length=80)
    target_type = models.CharField(max_length=80, blank=True)
    target_id = models.CharField(max_length=80, blank=True)
    data = models.JSONField(default=dict, blank=True)

    class Meta(TenantModel.Meta):
        db_table = "audit_events"
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["organization", "-created_at"], name="audit_org_time_idx")]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor_id}"
