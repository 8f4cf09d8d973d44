"""Business actions on campaigns and participants: the only place their state changes."""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import date, timedelta

from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import OuterRef, Q, Subquery
from django.db.models.functions import Lower
from django.utils import timezone

from campaigns import identities
from campaigns.models import Campaign, CampaignEmail, Participant, ParticipantLink
from campaigns.participant_input import ParsedList
from campaigns.settings_schema import CampaignSettings
from tap import outbox
from tap.locks import advisory_xact_lock
from tap.orgs.services import audit

S = Campaign.Status
E = CampaignEmail.Status

# The lifecycle: (from, to) → the verb shown to people. Anything else is refused.
TRANSITIONS: dict[tuple[str, str], str] = {
    (S.DRAFT, S.ACTIVE): "activate",
    (S.ACTIVE, S.PAUSED): "pause",
    (S.PAUSED, S.ACTIVE): "resume",
    (S.ACTIVE, S.COMPLETED): "complete",
    (S.PAUSED, S.COMPLETED): "complete",
    (S.COMPLETED, S.ARCHIVED): "archive",
    (S.DRAFT, S.ARCHIVED): "archive",
}

REFUSALS = {
    S.ARCHIVED: "It is archived: archived campaigns are read-only.",
    S.COMPLETED: "It is completed: a completed campaign can only be archived.",
}


def allowed_transitions(campaign: Campaign) -> list[tuple[str, str]]:
    """[(target status, verb)] possible now, in a stable order."""
    return [(to, verb) for (frm, to), verb in TRANSITIONS.items() if frm == campaign.status]


def transition_refusal(current: str, target: str) -> str | None:
    """Why (current → target) is refused, or None when it is allowed."""
    if (current, target) in TRANSITIONS:
        return None
    if current == target:
        return f"The campaign is already {current}."
    reason = REFUSALS.get(current, "")
    return f"A {current} campaign cannot become {target}. {reason}".strip()


# --- campaigns -----------------------------------------------------------------------------


def _validated_text(name: str, mission: str, opening_question: str) -> dict:
    errors = {}
    if not name.strip():
        errors["name"] = "Give the campaign a name."
    if len(mission.strip()) < 10:
        errors["mission"] = (
            "Describe the mission in a sentence or more: the interviewer works from it."
        )
    if not opening_question.strip():
        errors["opening_question"] = "Write the first question participants see."
    if errors:
        raise ValidationError(errors)
    return {
        "name": name.strip(),
        "mission": mission.strip(),
        "opening_question": opening_question.strip(),
    }


CREATE_AGAIN_AFTER = timedelta(seconds=30)


def campaign_create(
    *,
    actor,
    org,
    name: str,
    mission: str,
    opening_question: str,
    settings: CampaignSettings | None = None,
    closes_at=None,
    once_within: timedelta | None = None,
) -> Campaign:
    """A new draft campaign. `once_within` (the create page: CREATE_AGAIN_AFTER): the same
    campaign made by the same person that recently is the answer instead — a second click
    on Create. Their creations then take turns, so two requests at once see each other."""
    values = _validated_text(name, mission, opening_question)
    settings = settings or CampaignSettings()
    with transaction.atomic():
        if once_within is not None:
            advisory_xact_lock(f"tap.campaign_create:{org.id}:{actor.pk}")
            twin = Campaign.objects.filter(
                created_by=actor, created_at__gt=timezone.now() - once_within, **values
            ).first()
            if twin is not None:
                return twin
        campaign = Campaign.objects.create(
            organization=org,
            created_by=actor,
            settings=settings.to_json(),
            closes_at=closes_at,
            **values,
        )
        audit(
            org_id=org.id,
            actor=actor,
            action="campaign.created",
            target=campaign,
            name=campaign.name,
        )
        _queue_mission_summary(campaign)
    return campaign


COMPLETED_FROZEN = (
    "This campaign is completed: its questions and settings stay as they were while it ran. "
    "Its name and summary can still change."
)
# What a completed campaign's form may still change (the rest is shown, disabled).
COMPLETED_EDITABLE = ("name", "mission_summary")


def campaign_update(
    *,
    actor,
    campaign: Campaign,
    name: str,
    mission: str,
    opening_question: str,
    settings: CampaignSettings,
    closes_at=None,
    mission_summary: str | None = None,
) -> Campaign:
    """Edit a campaign. Mission and opening question freeze once conversations exist: the
    answers already given were answers to those words."""
    values = _validated_text(name, mission, opening_question)
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if campaign.status == S.ARCHIVED:
            raise ValidationError("Archived campaigns are read-only.")
        text_changed = (values["mission"], values["opening_question"]) != (
            campaign.mission,
            campaign.opening_question,
        )
        if campaign.status == S.COMPLETED and (
            text_changed
            or settings.to_json() != campaign.options.to_json()
            or closes_at != campaign.closes_at
        ):
            raise ValidationError(COMPLETED_FROZEN)
        if text_changed and campaign_has_conversations(campaign):
            raise ValidationError(
                "The mission and opening question can no longer change: participants have "
                "already answered them. Settings and the name can still be edited."
            )
        if anonymity_locked(campaign) and not settings.anonymous:
            raise ValidationError({"anonymous": ANONYMITY_LOCKED})
        mission_changed = values["mission"] != campaign.mission
        for key, value in values.items():
            setattr(campaign, key, value)
        campaign.settings = settings.to_json()
        campaign.closes_at = closes_at
        fields = [*values, "settings", "closes_at", "updated_at"]
        cleared = False
        if mission_summary is not None and mission_summary.strip() != campaign.mission_summary:
            cleared = not mission_summary.strip()
            campaign.mission_summary = mission_summary.strip()[:500]
            campaign.mission_summary_edited = bool(campaign.mission_summary)
            fields += ["mission_summary", "mission_summary_edited"]
        campaign.save(update_fields=fields)
        audit(
            org_id=campaign.organization_id, actor=actor, action="campaign.updated", target=campaign
        )
        # A new mission, or the summary cleared to have it written again ("Written for you").
        if not campaign.mission_summary_edited and (mission_changed or cleared):
            _queue_mission_summary(campaign)
    return campaign


ANONYMITY_LOCKED = (
    "Participants were invited to answer anonymously, so this campaign stays anonymous. "
    "Start a new campaign to collect named responses."
)


def anonymity_locked(campaign: Campaign) -> bool:
    """Anonymity can be turned on at any time, but not off once invitations went out: people
    answered on that promise, and naming them afterwards would break it."""
    return campaign.options.anonymous and (
        campaign.status != S.DRAFT or campaign_has_conversations(campaign)
    )


def campaign_has_conversations(campaign: Campaign) -> bool:
    return campaign.conversations.exists()


def _queue_mission_summary(campaign: Campaign) -> None:
    outbox.enqueue(
        "campaigns.summarise_mission",
        queue="ai",
        org_id=campaign.organization_id,
        campaign_id=str(campaign.pk),
        mission=campaign.mission,
    )


def mission_summary_store(*, campaign_id, mission: str, summary: str) -> bool:
    """Store a generated summary unless a person edited it or the mission moved on."""
    updated = Campaign.objects.filter(
        pk=campaign_id, mission=mission, mission_summary_edited=False
    ).update(mission_summary=summary[:500], updated_at=timezone.now())
    return bool(updated)


def campaign_transition(*, actor, campaign: Campaign, to: str) -> Campaign:
    """Move a campaign through its lifecycle (the transition table above)."""
    with transaction.atomic():
        campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
        refusal = transition_refusal(campaign.status, to)
        if refusal:
            raise ValidationError(refusal)
        if to == S.ACTIVE and not campaign.participants.exists():
            raise ValidationError("Add participants before activating the campaign.")
        now = timezone.now()
        if to == S.ACTIVE and campaign.closes_at is not None and campaign.closes_at <= now:
            # Invitations would go out, and the campaign complete minutes later.
            raise ValidationError(
                f"The close date ({campaign.closes_at:%-d %b %Y}) has passed. Edit the "
                "campaign to choose a later one, or none, then activate it."
            )
        old = campaign.status
        campaign.status = to
        fields = ["status", "updated_at"]
        if to == S.ACTIVE and campaign.activated_at is None:
            campaign.activated_at = now
            fields.append("activated_at")
        if to == S.COMPLETED:
            campaign.completed_at = now
            fields.append("completed_at")
        if to == S.ARCHIVED:
            campaign.archived_at = now
            fields.append("archived_at")
        campaign.save(update_fields=fields)
        audit(
            org_id=campaign.organization_id,
            actor=actor,
            action=f"campaign.{to}",
            target=campaign,
            old=old,
            new=to,
        )
        if to == S.ACTIVE:
            invite_pending(campaign)
        if old == S.PAUSED and to == S.ACTIVE:
            _requeue_held_emails(campaign)
        if to == S.COMPLETED:
            # Conversations (a later app) close themselves and queue the analysis.
            outbox.enqueue(
                "conversations.campaign_completed",
                queue="default",
                org_id=campaign.organization_id,
                campaign_id=str(campaign.pk),
            )
    return campaign


def campaigns_close_due(*, now=None) -> int:
    """Complete the active or paused campaigns of the current org whose close date passed."""
    now = now or timezone.now()
    closed = 0
    for campaign in Campaign.objects.filter(status__in=[S.ACTIVE, S.PAUSED], closes_at__lte=now):
        try:
            # A savepoint each: a campaign someone completed a moment ago is refused (and
            # skipped) without undoing the others.
            with transaction.atomic():
                campaign_transition(actor=None, campaign=campaign, to=S.COMPLETED)
        except ValidationError:
            continue
        closed += 1
    return closed


# --- participants --------------------------------------------------------------------------


@dataclass
class AddReport:
    added: int = 0
    already_there: list[str] = field(default_factory=list)
    rejected: list[tuple[int, str, str]] = field(default_factory=list)
    invited: int = 0
    linked: int = 0  # matched to a known developer (campaigns.identities)


def participants_add(*, actor, campaign: Campaign, parsed: ParsedList) -> AddReport:
    """Add participants in bulk (a few queries whatever the count); adding twice changes
    nothing. In an active campaign the new ones are invited straight away."""
    report = AddReport(rejected=list(parsed.rejected))
    emails = [email for email, _name in parsed.valid]
    with transaction.atomic():
        # Lock the campaign: an activation running at the same time must either see these
        # participants (and invite them) or happen after, seeing them here as active.
        campaign = Campaign.objects.select_for_update().get(pk=campaign.pk)
        if campaign.status in (S.COMPLETED, S.ARCHIVED):
            raise ValidationError(f"Participants cannot be added to a {campaign.status} campaign.")
        existing = set(
            Participant.objects.filter(campaign=campaign)
            .annotate(lower=Lower("email"))
            .filter(lower__in=emails)
            .values_list("lower", flat=True)
        )
        new = [
            Participant(
                organization_id=campaign.organization_id, campaign=campaign, email=e, name=n
            )
            for e, n in parsed.valid
            if e not in existing
        ]
        report.already_there = sorted(existing)
        Participant.objects.bulk_create(new, batch_size=1000, ignore_conflicts=True)
        report.added = len(new)
        if new:
            audit(
                org_id=campaign.organization_id,
                actor=actor,
                action="participants.added",
                target=campaign,
                count=len(new),
            )
        if new:
            # The developers behind the new addresses, when metrics know them.
            report.linked = identities.participants_link(campaign=campaign)
        if campaign.status == S.ACTIVE:
            report.invited = invite_pending(campaign)
    return report


def participants_from_cohort(*, actor, campaign: Campaign, cohort: str, today: date):
    """Add a cohort's developers as participants (linked to them). Developers without a
    known address are listed as rejected, with the reason."""
    developers = identities.cohort_identities(campaign.organization_id, cohort, today)
    if not developers:
        raise ValidationError("That group has no developers now. Choose another.")
    parsed = ParsedList()
    seen: set[str] = set()
    for number, person in enumerate(developers, start=1):
        label = person.github_login or person.display_name or str(person.pk)
        if person.email:
            parsed.add(number, label, person.email, person.display_name, seen)
        else:
            parsed.rejected.append((number, label, "no email address known for this developer"))
    return participants_add(actor=actor, campaign=campaign, parsed=parsed)


HELD_WHILE_PAUSED = "held while the campaign is paused"


def _requeue_held_emails(campaign: Campaign) -> int:
    """Emails whose job ran while the campaign was paused went back to pending, marked
    held (campaigns.tasks.send_campaign_email): queue them again. Pending ones whose job has
    not run yet still have it."""
    held = list(
        CampaignEmail.objects.filter(
            participant__campaign=campaign,
            status=CampaignEmail.Status.PENDING,
            error=HELD_WHILE_PAUSED,
        ).values_list("pk", flat=True)
    )
    outbox.enqueue_many(
        "campaigns.send_campaign_email",
        queue="email",
        org_id=campaign.organization_id,
        kwargs_list=[{"email_id": str(pk)} for pk in held],
    )
    return len(held)


def invite_pending(campaign: Campaign) -> int:
    """Queue an invitation for every participant not invited yet (one email row and one
    outbox job each, inserted in bulk)."""
    pending = list(
        Participant.objects.filter(
            campaign=campaign, status=Participant.Status.PENDING
        ).values_list("pk", flat=True)
    )
    if not pending:
        return 0
    now = timezone.now()
    Participant.objects.filter(pk__in=pending).update(
        status=Participant.Status.INVITED, invited_at=now, updated_at=now
    )
    _queue_emails(campaign, pending, CampaignEmail.Kind.INVITATION, sequence_for=lambda _p: 1)
    return len(pending)


def _queue_emails(campaign, participant_ids, kind, *, sequence_for) -> list[CampaignEmail]:
    emails = [
        CampaignEmail(
            organization_id=campaign.organization_id,
            participant_id=pid,
            kind=kind,
            sequence=sequence_for(pid),
        )
        for pid in participant_ids
    ]
    CampaignEmail.objects.bulk_create(emails, batch_size=1000, ignore_conflicts=True)
    outbox.enqueue_many(
        "campaigns.send_campaign_email",
        queue="email",
        org_id=campaign.organization_id,
        kwargs_list=[{"email_id": str(e.pk)} for e in emails],
    )
    return emails


RESEND_PAUSE = timedelta(minutes=1)


def participant_resend(
    *, actor, participant: Participant, after_revoke: bool = False
) -> CampaignEmail:
    """Send the invitation again (a new email with a fresh link). `after_revoke`: the links
    were revoked a moment ago (`links_revoke`): an invitation already sending or just sent
    carries a revoked link, so a new one goes whatever the pause; one still pending gets its
    link when it is sent, after the revocation, and is the answer."""
    campaign = participant.campaign
    if campaign.status != S.ACTIVE:
        raise ValidationError("Invitations go out only while the campaign is active.")
    if participant.status in (Participant.Status.DECLINED, Participant.Status.COMPLETED):
        raise ValidationError(f"{participant.email} has {participant.status}; nothing to resend.")
    with transaction.atomic():
        # Locked, so a double click (or two admins) queues one email, not two.
        Participant.objects.select_for_update().filter(pk=participant.pk).first()
        latest = (
            CampaignEmail.objects.filter(participant=participant, kind="invitation")
            .order_by("-sequence")
            .only("sequence", "status", "sent_at", "updated_at")
            .first()
        )
        if latest is not None:
            # On its way — unless it has sat there longer than a send and the longest wait
            # before a retry may take (a worker that died on its last attempt leaves it so):
            # then a new one is the way out. Waiting out a mail server's outage is not stuck.
            stale = outbox.lease_for("email") + outbox.BACKOFF_CAP
            stuck = latest.updated_at < timezone.now() - stale
            if after_revoke and latest.status == E.PENDING and not stuck:
                return latest
            if latest.status in (E.PENDING, E.SENDING) and not stuck and not after_revoke:
                raise ValidationError(
                    f"An invitation to {participant.email} is on its way already."
                )
            recent = latest.sent_at and latest.sent_at > timezone.now() - RESEND_PAUSE
            if recent and not after_revoke:
                raise ValidationError(
                    f"An invitation to {participant.email} went out less than a minute ago."
                )
        last = latest.sequence if latest is not None else 0
        if participant.status in (Participant.Status.PENDING, Participant.Status.BOUNCED):
            Participant.objects.filter(pk=participant.pk).update(
                status=Participant.Status.INVITED, invited_at=timezone.now(), bounce_reason=""
            )
        (email,) = _queue_emails(
            campaign,
            [participant.pk],
            CampaignEmail.Kind.INVITATION,
            sequence_for=lambda _p: last + 1,
        )
        audit(
            org_id=campaign.organization_id,
            actor=actor,
            action="participant.resent",
            target=participant,
            email=participant.email,
        )
    return email


def removal_refused(campaign: Campaign) -> str:
    """Why no participant may be removed from the campaign now ("" when they may)."""
    if campaign.status in (S.COMPLETED, S.ARCHIVED):
        return (
            f"Participants cannot be removed from a {campaign.status} campaign: its responses "
            "stay as they were collected and analysed. To delete someone's personal data, "
            "use “Erase personal data”."
        )
    return ""


def participant_remove(*, actor, participant: Participant) -> None:
    """Remove a participant with their links, emails and conversation."""
    with transaction.atomic():
        # Locked, as adding does: a campaign completing meanwhile keeps its participants.
        campaign = Campaign.objects.select_for_update().get(pk=participant.campaign_id)
        refused = removal_refused(campaign)
        if refused:
            raise ValidationError(refused)
        email = participant.email
        participant.delete()
        audit(
            org_id=campaign.organization_id,
            actor=actor,
            action="participant.removed",
            target=campaign,
            email=email,
        )


# --- links ---------------------------------------------------------------------------------


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def link_issue(*, participant: Participant) -> str:
    """A new link for the participant; returns the token (it exists nowhere else)."""
    token = secrets.token_urlsafe(32)  # 256 bits
    ParticipantLink.objects.create(
        organization_id=participant.organization_id,
        participant=participant,
        token_hash=hash_token(token),
    )
    return token


def links_revoke(*, actor, participant: Participant, reissue: bool) -> CampaignEmail | None:
    """Revoke every link of the participant; with `reissue`, email them a fresh one. The
    revocation stands whatever happens to the reissue (a ValidationError then says why no
    new link went out)."""
    refused = None
    with transaction.atomic():
        count = ParticipantLink.objects.filter(participant=participant, revoked_at=None).update(
            revoked_at=timezone.now()
        )
        audit(
            org_id=participant.organization_id,
            actor=actor,
            action="participant.links_revoked",
            target=participant,
            email=participant.email,
            count=count,
            reissue=reissue,
        )
        if reissue:
            try:
                with transaction.atomic():
                    return participant_resend(
                        actor=actor, participant=participant, after_revoke=True
                    )
            except ValidationError as exc:
                refused = " ".join(exc.messages)
    if refused:
        raise ValidationError(
            f"Every link of {participant.email} was revoked, but no new one was sent: {refused}"
        )
    return None


def participant_decline(*, participant: Participant) -> None:
    """The participant wants no more emails (one-click link in every email)."""
    with transaction.atomic():
        updated = (
            Participant.objects.filter(pk=participant.pk)
            .exclude(status__in=[Participant.Status.DECLINED, Participant.Status.COMPLETED])
            .update(status=Participant.Status.DECLINED, updated_at=timezone.now())
        )
        CampaignEmail.objects.filter(participant=participant, status="pending").update(
            status=CampaignEmail.Status.FAILED, error="declined"
        )
        if updated:
            audit(
                org_id=participant.organization_id,
                actor=None,
                action="participant.declined",
                target=participant,
            )


def participant_opened(*, participant: Participant) -> None:
    now = timezone.now()
    Participant.objects.filter(
        pk=participant.pk, status__in=[Participant.Status.INVITED, Participant.Status.PENDING]
    ).update(status=Participant.Status.OPENED, opened_at=now, updated_at=now)
    Participant.objects.filter(pk=participant.pk).update(last_activity_at=now)


# --- reminders -----------------------------------------------------------------------------

REMINDABLE = [Participant.Status.INVITED, Participant.Status.OPENED, Participant.Status.IN_PROGRESS]
OPENED_OR_STARTED = [Participant.Status.OPENED, Participant.Status.IN_PROGRESS]


def reminders_queue_due(*, now=None) -> int:
    """Queue the reminders that are due in the current organisation's active campaigns.

    Each participant's next reminder is `reminder_days[reminders_sent]` days after their
    invitation; `reminders_sent` moves on in the same transaction as the email row, so a
    sweep that runs twice queues nothing twice."""

    now = now or timezone.now()
    queued = 0
    # Counted from the latest invitation that went out, not from when it was queued: one
    # that failed and was resent days later, or that a pause held, is not followed by a
    # reminder minutes after it arrives.
    last_sent = Subquery(
        CampaignEmail.objects.filter(
            participant=OuterRef("pk"), kind=CampaignEmail.Kind.INVITATION, status=E.SENT
        )
        .order_by("-sent_at")
        .values("sent_at")[:1]
    )
    for campaign in Campaign.objects.filter(status=S.ACTIVE):
        days = campaign.options.reminder_days
        for index, day in enumerate(days):
            # Keep the schedule's spacing after the previous reminder too: after a pause or a
            # sweeper outage, reminders 1 and 2 must not go out in the same sweep.
            gap = timedelta(days=day - (days[index - 1] if index else 0))
            since = now - timedelta(days=day)
            with transaction.atomic():
                due = list(
                    Participant.objects.select_for_update(skip_locked=True)
                    .annotate(last_sent=last_sent)
                    .filter(
                        Q(reminded_at=None) | Q(reminded_at__lte=now - gap),
                        campaign=campaign,
                        status__in=REMINDABLE,
                        reminders_sent=index,
                        invited_at__lte=since,
                    )
                    # No "reminder" to someone whose invitation never left (the campaign page
                    # says it failed); someone who opened their link got it one way or another.
                    .filter(
                        Q(last_sent__lte=since) | Q(last_sent=None, status__in=OPENED_OR_STARTED)
                    )
                    .values_list("pk", flat=True)
                )
                if not due:
                    continue
                Participant.objects.filter(pk__in=due).update(
                    reminders_sent=index + 1, reminded_at=now, updated_at=now
                )
                _queue_emails(
                    campaign,
                    due,
                    CampaignEmail.Kind.REMINDER,
                    sequence_for=lambda _p, n=index + 1: n,
                )
                queued += len(due)
    return queued
