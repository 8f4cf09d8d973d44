"""Participants linked to the developers behind their addresses (developer metrics)."""

import pytest

from campaigns import identities, services
from campaigns.models import Participant
from campaigns.participant_input import parse_pasted
from metrics.models import DeveloperIdentity
from tap.orgs.models import AuditEvent
from tap.tenancy import org_context
from tests.campaigns import creator

pytestmark = pytest.mark.django_db


def developer(org, login, email):
    with org_context(org.id):
        return DeveloperIdentity.objects.create(
            organization=org, github_login=login, email=email, display_name=login.title()
        )


def add(org, actor, campaign, text):
    with org_context(org.id):
        return services.participants_add(actor=actor, campaign=campaign, parsed=parse_pasted(text))


def linked(org) -> dict[str, str | None]:
    with org_context(org.id):
        return dict(Participant.objects.values_list("email", "developer_identity__github_login"))


def test_added_participants_are_linked_to_developers_by_address(org_a, org_b, alice, client_for):
    developer(org_a, "octocat", "Octo.Cat@Example.com")
    developer(org_b, "stranger", "nobody@example.com")  # another org's developer
    campaign = creator.campaign(org_a, alice)
    report = add(org_a, alice, campaign, "octo.cat@example.com\nnobody@example.com")
    assert report.linked == 1
    assert linked(org_a) == {"octo.cat@example.com": "octocat", "nobody@example.com": None}
    page = client_for(alice).get(creator.url("detail", org_a, campaign.pk)).content.decode()
    assert "Developer: Octocat" in page
    assert "Unlink developer" in page


def test_an_admin_unlinks_a_wrong_match_and_it_stays_unlinked(org_a, alice, bob, client_for):
    developer(org_a, "octocat", "octo@example.com")
    campaign = creator.campaign(org_a, alice)
    add(org_a, alice, campaign, "octo@example.com")
    with org_context(org_a.id):
        participant = Participant.objects.get()
    url = creator.url("participant_unlink", org_a, campaign.pk, participant.pk)
    assert client_for(bob).post(url).status_code == 403  # members read only
    assert linked(org_a) == {"octo@example.com": "octocat"}
    assert client_for(alice).post(url).status_code == 302
    assert linked(org_a) == {"octo@example.com": None}
    with org_context(org_a.id):
        assert identities.participants_link() == 0  # not linked again
        assert AuditEvent.objects.filter(action="participant.identity_unlinked").count() == 1


def test_a_developer_deleted_leaves_the_participant_unlinked(org_a, alice):
    octocat = developer(org_a, "octocat", "octo@example.com")
    campaign = creator.campaign(org_a, alice)
    add(org_a, alice, campaign, "octo@example.com")
    with org_context(org_a.id):
        octocat.delete()
    assert linked(org_a) == {"octo@example.com": None}
