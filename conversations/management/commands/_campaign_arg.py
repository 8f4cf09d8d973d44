"""--org and --campaign for the analysis commands: the organisation by slug (found on the
service connection, as support works across organisations), the campaign by id or name."""

from __future__ import annotations

import uuid

from django.core.management.base import CommandError

from campaigns.models import Campaign
from tap.orgs.models import Organization


def organization(slug: str) -> Organization:
    found = Organization.objects.using("service").filter(slug=slug).first()
    if found is None:
        raise CommandError(f"No organisation with slug {slug!r}.")
    return found


def campaign(name_or_id: str) -> Campaign:
    """Inside the organisation's context: the campaign with this id, or this exact name."""
    campaigns = Campaign.objects.all()
    try:
        found = campaigns.filter(pk=uuid.UUID(name_or_id)).first()
    except ValueError:
        found = None
    if found is not None:
        return found
    named = list(campaigns.filter(name=name_or_id)[:2])
    if len(named) > 1:
        raise CommandError(f"Several campaigns are named {name_or_id!r}: give its id.")
    if not named:
        raise CommandError(f"No campaign {name_or_id!r} in this organisation.")
    return named[0]
