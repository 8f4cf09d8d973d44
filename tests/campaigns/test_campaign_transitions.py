"""The lifecycle through the pages: allowed moves succeed, refused ones say why."""

import pytest

from campaigns.models import Campaign, CampaignEmail
from tap.tenancy import org_context
from tests.campaigns import creator

pytestmark = pytest.mark.django_db


def move(client, org, campaign, to):
    response = client.post(
        creator.url("transition", org, campaign.pk), {"to": to, "confirm": "1"}, follow=True
    )
    assert response.redirect_chain[-1][0] == creator.url("detail", org, campaign.pk)
    with org_context(org.id):
        campaign.refresh_from_db()
    return " ".join(creator.messages_of(response))


def test_a_campaign_through_its_whole_life(org_a, alice, client_for):
    client = client_for(alice)
    campaign = creator.campaign(org_a, alice)

    assert "Add participants before activating" in move(client, org_a, campaign, "active")
    assert campaign.status == "draft"

    client.post(
        creator.url("participants_add", org_a, campaign.pk),
        {"addresses": "a@x.example\nb@x.example"},
    )
    assert "Campaign activated" in move(client, org_a, campaign, "active")
    assert campaign.status == "active"
    with org_context(org_a.id):
        assert CampaignEmail.objects.filter(kind="invitation").count() == 2

    assert "Campaign paused" in move(client, org_a, campaign, "paused")
    assert "already paused" in move(client, org_a, campaign, "paused")
    assert "Campaign resumed" in move(client, org_a, campaign, "active")
    assert "cannot become archived" in move(client, org_a, campaign, "archived")
    assert "Campaign completed" in move(client, org_a, campaign, "completed")
    message = move(client, org_a, campaign, "active")
    assert "A completed campaign cannot become active" in message
    assert "can only be archived" in message
    assert "Campaign archived" in move(client, org_a, campaign, "archived")
    assert "archived campaigns are read-only" in move(client, org_a, campaign, "active")
    assert campaign.status == "archived"


def test_complete_and_archive_ask_first(org_a, alice, client_for):
    """They cannot be undone: the button opens a page that says what happens, and only its
    own button moves the campaign."""
    client = client_for(alice)
    campaign = creator.campaign(org_a, alice, status="active")
    (person,) = creator.participants_in_bulk(org_a, campaign, 1)
    creator.conversation(org_a, campaign, person, [creator.QUESTION, "Half an answer"])
    url = creator.url("transition", org_a, campaign.pk)
    page = client.post(url, {"to": "completed"})
    assert page.status_code == 200
    html = page.content.decode()
    assert "Complete “" in html
    assert "1 conversation still open is closed as it stands" in html
    assert 'name="confirm" value="1"' in html
    with org_context(org_a.id):
        campaign.refresh_from_db()
    assert campaign.status == "active"
    assert "Campaign completed" in move(client, org_a, campaign, "completed")
    assert "read-only" in client.post(url, {"to": "archived"}).content.decode()
    with org_context(org_a.id):
        campaign.refresh_from_db()
    assert campaign.status == "completed"
    # Pausing needs no confirmation.
    other = creator.campaign(org_a, alice, name="Other", status="active")
    response = client.post(creator.url("transition", org_a, other.pk), {"to": "paused"})
    assert response.status_code == 302


def test_nonsense_targets_are_refused(org_a, alice, client_for):
    campaign = creator.campaign(org_a, alice)
    message = move(client_for(alice), org_a, campaign, "exploded")
    assert "cannot become exploded" in message
    assert campaign.status == "draft"


def test_the_detail_page_offers_only_the_moves_allowed_now(org_a, alice, client_for):
    client = client_for(alice)
    for status, verbs in {
        "draft": ["activate", "archive"],
        "paused": ["resume", "complete"],
        "completed": ["archive"],
        "archived": [],
    }.items():
        campaign = creator.campaign(org_a, alice, name=status, status=status)
        response = client.get(creator.url("detail", org_a, campaign.pk))
        assert [verb for _to, verb in response.context["transitions"]] == verbs


def test_members_cannot_move_campaigns_and_get_is_not_allowed(org_a, alice, bob, client_for):
    campaign = creator.campaign(org_a, alice, status="active")
    client = client_for(bob)
    assert (
        client.post(creator.url("transition", org_a, campaign.pk), {"to": "paused"}).status_code
        == 403
    )
    assert client.get(creator.url("transition", org_a, campaign.pk)).status_code == 405
    with org_context(org_a.id):
        assert Campaign.objects.get().status == "active"


def test_dave_the_admin_can_run_campaigns(org_a, alice, dave, client_for):
    campaign = creator.campaign(org_a, alice, status="active")
    assert "Campaign paused" in move(client_for(dave), org_a, campaign, "paused")
