"""Participants and the developers behind them (developer metrics), linked by email.

A participant whose address is a known developer's (case-insensitively) is linked to that
developer identity, so a campaign can be drawn from a usage cohort and its analysis broken
down by usage tier. An admin can unlink a wrong match; the participant then stays unlinked.
Everything here runs inside the organisation's context.
"""

from __future__ import annotations

from django.db import transaction
from django.db.models import OuterRef, Subquery
from django.db.models.functions import Lower

from campaigns.models import Campaign, Participant
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
