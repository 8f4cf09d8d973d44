"""Support staff: a fresh link for one participant, printed on one line.

    python manage.py participant_link --org acme --campaign "Tooling survey" --email p@x.example

Issues a new link (earlier ones keep working) and records who asked for it in the audit log;
the token itself is printed and stored nowhere."""

from __future__ import annotations

import getpass
import uuid

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.urls import reverse

from campaigns import services
from campaigns.models import Campaign, Participant
from tap.orgs.models import Organization
from tap.orgs.services import audit
from tap.tenancy import org_context


class Command(BaseCommand):
    help = "Print a fresh participant link (full URL) for support staff. Audited."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="organisation slug")
        parser.add_argument("--campaign", required=True, help="campaign name or id")
        parser.add_argument("--email", required=True, help="the participant's address")

    def handle(self, *args, org: str, campaign: str, email: str, **options):
        # Support works across organisations: find the org on the service connection, then
        # do everything else as that organisation.
        organization = Organization.objects.using("service").filter(slug=org).first()
        if organization is None:
            raise CommandError(f"No organisation with slug {org!r}.")
        with org_context(organization.pk):
            found = self._campaign(campaign)
            participant = Participant.objects.filter(
                campaign=found, email__iexact=email.strip()
            ).first()
            if participant is None:
                raise CommandError(f"{email!r} is not a participant of campaign {found.name!r}.")
            token = services.link_issue(participant=participant)
            audit(
                org_id=organization.pk,
                actor=None,
                action="participant.link_issued",
                target=participant,
                email=participant.email,
                campaign=str(found.pk),
                via="manage.py participant_link",
                by=_operator(),
            )
        self.stdout.write(f"{settings.TAP_BASE_URL}{reverse('participant:link', args=[token])}")

    def _campaign(self, name_or_id: str) -> Campaign:
        campaigns = Campaign.objects.all()
        try:
            by_id = campaigns.filter(pk=uuid.UUID(name_or_id)).first()
        except ValueError:
            by_id = None
        if by_id is not None:
            return by_id
        matches = list(campaigns.filter(name__iexact=name_or_id.strip())[:2])
        if not matches:
            raise CommandError(f"No campaign {name_or_id!r} in this organisation.")
        if len(matches) > 1:
            raise CommandError(
                f"Several campaigns are named {name_or_id!r}; pass the campaign's id instead."
            )
        return matches[0]


def _operator() -> str:
    try:
        return getpass.getuser()
    except Exception:  # no user name in some containers
        return ""
