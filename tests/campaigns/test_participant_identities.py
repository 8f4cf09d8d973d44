"""Participants linked to the developers behind their addresses (developer metrics)."""

import pytest

from campaigns import identities, services
from campaigns.models import Participant
from campaigns.participant_input import parse_pasted
from metrics.models import DeveloperIdentity, DeveloperTeam
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


def test_a_campaign_draws_participants_from_a_developer_group(org_a, alice, bob, client_for):
    people = [
        developer(org_a, "ana", "ana@example.com"),
        developer(org_a, "ben", "ben@example.com"),
        developer(org_a, "cy", ""),  # no address known
        developer(org_a, "dee", "dee@example.com"),  # another team
    ]
    with org_context(org_a.id):
        teams = ["platform", "platform", "platform", "mobile"]
        for person, team in zip(people, teams, strict=True):
            DeveloperTeam.objects.create(
                organization=org_a, developer_identity=person, team=team, source="identity_map"
            )
    campaign = creator.campaign(org_a, alice)
    add_page = creator.url("participants_add", org_a, campaign.pk)
    page = client_for(alice).get(add_page).content.decode()
    assert '<option value="team:platform">Team platform (3)</option>' in page
    assert '<option value="team:mobile">Team mobile (1)</option>' in page
    post = creator.url("participants_from_cohort", org_a, campaign.pk)
    assert client_for(bob).post(post, {"cohort": "team:platform"}).status_code == 403
    response = client_for(alice).post(post, {"cohort": "team:platform"})
    assert response.status_code == 302
    assert linked(org_a) == {"ana@example.com": "ana", "ben@example.com": "ben"}
    report = client_for(alice).get(add_page).content.decode()
    assert "Added 2" in report
    assert "no email address known" in report.lower()
    # Again: nothing new; a group that does not exist: a clear message, nothing added.
    client_for(alice).post(post, {"cohort": "team:platform"})
    assert len(linked(org_a)) == 2
    refused = client_for(alice).post(post, {"cohort": "team:nobody"}, follow=True)
    assert "That group has no developers now" in refused.content.decode()
    assert len(linked(org_a)) == 2


@pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])
def test_participants_added_first_are_linked_when_metrics_arrive(org_a, alice, tmp_path):
    from tests.metrics.helpers import claude_record, ingest, ndjson, write

    campaign = creator.campaign(org_a, alice)
    add(org_a, alice, campaign, "Dev@X.example\nother@x.example")
    assert linked(org_a) == {"dev@x.example": None, "other@x.example": None}
    report = write(tmp_path, "claude.ndjson", ndjson([claude_record(email="dev@x.example")]))
    assert ingest(org_a, report).status == "succeeded"
    with org_context(org_a.id):
        dev = Participant.objects.select_related("developer_identity").get(email="dev@x.example")
    assert dev.developer_identity.email == "dev@x.example"
    assert linked(org_a)["other@x.example"] is None
