"""Participants and the developers behind them (developer metrics), linked by email.

A participant whose address is a known developer's (case-insensitively) is linked to that
developer identity, so a campaign can be drawn from a usage cohort and its analysis broken
down by usage tier. An admin can unlink a wrong match; the participant then stays unlinked.
Everything here runs inside the organisation's context.
"""

from __future__ import annotations

from datetime import date

from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.db.models.functions import Lower

from campaigns.models import Campaign, Participant
from metrics import selectors
from metrics.models import DeveloperIdentity
from tap.orgs.services import audit


def participants_link(*, campaign: Campaign | None = None) -> int:
    """Link the organisation's unlinked participants (or one campaign's) to the developer
    with their address. One UPDATE; returns how many were linked."""
    developer = (
        DeveloperIdentity.objects.exclude(email="")
        .annotate(address=Lower("email"))
        .filter(address=Lower(OuterRef("email")))
        .values("pk")[:1]
    )
    candidates = Participant.objects.filter(
        developer_identity__isnull=True, identity_unlinked=False
    )
    if campaign is not None:
        candidates = candidates.filter(campaign=campaign)
    matched = candidates.annotate(match=Subquery(developer)).filter(match__isnull=False)
    return Participant.objects.filter(pk__in=matched.values("pk")).update(
        developer_identity=Subquery(developer)
    )


def participant_identity_unlink(*, actor, participant: Participant) -> None:
    """A wrong match: unlink it, and keep it unlinked."""
    with transaction.atomic():
        changed = Participant.objects.filter(
            pk=participant.pk, developer_identity__isnull=False
        ).update(developer_identity=None, identity_unlinked=True)
        if changed:
            audit(
                org_id=participant.organization_id,
                actor=actor,
                action="participant.identity_unlinked",
                target=participant,
            )


# --- campaigns drawn from developer cohorts ------------------------------------------------

TIER_LABELS = {
    "heavy": "Heavy {tool} users",
    "moderate": "Moderate {tool} users",
    "light": "Light {tool} users",
    "none": "Developers without {tool} usage",
}
TOOL_LABELS = {"copilot": "Copilot", "claude_code": "Claude Code"}


def cohort_choices(org_id, today: date) -> list[tuple[str, str]]:
    """(value, label) of every cohort a campaign can be drawn from, with its size: seats
    assigned but never used or idle, usage tiers per tool over the last four weeks, teams."""
    choices = []
    seats = selectors.seat_utilisation(org_id, today)
    if seats["licensed"]:
        idle = len(seats["idle"])
        choices += [
            ("seats:never", f"Copilot seat assigned, never used ({seats['never']})"),
            ("seats:idle", f"Copilot seat, not used in 30 days ({idle})"),
        ]
    start, end = selectors.default_range(org_id, today)
    for tool in selectors.tools(org_id):
        members = selectors.cohort_members(org_id, selectors.Filters(start, end, tool), by="tier")
        name = TOOL_LABELS.get(tool, tool)
        for tier in ("heavy", "moderate", "light", "none"):
            size = len(members.get(tier, ()))
            if size:
                choices.append(
                    (f"tier:{tool}:{tier}", f"{TIER_LABELS[tier].format(tool=name)} ({size})")
                )
    teams = selectors.cohort_members(org_id, selectors.Filters(start, end), by="team")
    for team in sorted(teams):
        choices.append((f"team:{team}", f"Team {team} ({len(teams[team])})"))
    return choices


def cohort_label(value: str) -> str:
    """The group's name (without its size), for the report after adding it."""
    kind, _, rest = value.partition(":")
    if kind == "seats":
        return {
            "never": "Copilot seat assigned, never used",
            "idle": "Copilot seat, not used in 30 days",
        }.get(rest, "developer group")
    if kind == "tier":
        tool, _, tier = rest.partition(":")
        if tier in TIER_LABELS:
            return TIER_LABELS[tier].format(tool=TOOL_LABELS.get(tool, tool))
    if kind == "team" and rest:
        return f"Team {rest}"
    return "developer group"


def cohort_identities(org_id, value: str, today: date) -> list[DeveloperIdentity]:
    """The developers of one cohort (a value from `cohort_choices`)."""
    kind, _, rest = value.partition(":")
    start, end = selectors.default_range(org_id, today)
    if kind == "seats" and rest in ("never", "idle"):
        seats = selectors.seat_utilisation(org_id, today)
        ids = {p["id"] for p in seats["idle"] if rest == "idle" or p["never"]}
    elif kind == "tier":
        tool, _, tier = rest.partition(":")
        members = selectors.cohort_members(org_id, selectors.Filters(start, end, tool), by="tier")
        ids = members.get(tier, set())
    elif kind == "team":
        ids = selectors.cohort_members(org_id, selectors.Filters(start, end), by="team").get(
            rest, set()
        )
    else:
        ids = set()
    return list(DeveloperIdentity.objects.filter(pk__in=ids).order_by("github_login", "email"))
