"""Per-participant actions on the campaign page: resend, revoke and reissue, remove."""

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns import services
from campaigns.models import CampaignEmail, Participant, ParticipantLink
from conversations.models import Conversation, Message
from tap.tenancy import org_context
from tests.campaigns import creator

pytestmark = pytest.mark.django_db


@pytest.fixture
def active(org_a, alice):
    campaign = creator.campaign(org_a, alice, status="active")
    (person,) = creator.participants_in_bulk(org_a, campaign, 1, statuses=("bounced",))
    return campaign, person


def post(client, name, org, campaign, person):
    response = client.post(creator.url(name, org, campaign.pk, person.pk), follow=True)
    assert response.redirect_chain[-1][0] == creator.url("detail", org, campaign.pk)
    return " ".join(creator.messages_of(response))


def test_resend_queues_a_new_invitation_and_clears_a_bounce(org_a, alice, client_for, active):
    campaign, person = active
    message = post(client_for(alice), "participant_resend", org_a, campaign, person)
    assert f"A new invitation to {person.email} is on its way" in message
    with org_context(org_a.id):
        person.refresh_from_db()
        assert person.status == "invited"
        assert person.bounce_reason == ""
        assert CampaignEmail.objects.filter(participant=person, kind="invitation").count() == 1


def test_resending_twice_sends_one_invitation(org_a, alice, client_for, active):
    """A double click, or two admins: the second finds one on its way (or just sent)."""
    campaign, person = active
    client = client_for(alice)
    post(client, "participant_resend", org_a, campaign, person)
    message = post(client, "participant_resend", org_a, campaign, person)
    assert f"An invitation to {person.email} is on its way already." in message
    # Waiting out a mail server's outage (a retry's back-off reaches 10 minutes) is on its
    # way too, not stuck: a second one would go out beside it once the server is back.
    with org_context(org_a.id):
        CampaignEmail.objects.update(updated_at=timezone.now() - timedelta(minutes=8))
    message = post(client, "participant_resend", org_a, campaign, person)
    assert "is on its way already." in message
    with org_context(org_a.id):
        assert CampaignEmail.objects.filter(participant=person).count() == 1
        CampaignEmail.objects.update(status="sent", sent_at=timezone.now())
    message = post(client, "participant_resend", org_a, campaign, person)
    assert "went out less than a minute ago" in message
    with org_context(org_a.id):
        CampaignEmail.objects.update(sent_at=timezone.now() - timedelta(minutes=2))
    message = post(client, "participant_resend", org_a, campaign, person)
    assert "is on its way." in message  # a real second try is fine
    # One stuck on its way for longer than a send may take (its worker died) is no barrier.
    with org_context(org_a.id):
        CampaignEmail.objects.filter(sequence=2).update(
            status="sending", updated_at=timezone.now() - timedelta(hours=1)
        )
    message = post(client, "participant_resend", org_a, campaign, person)
    assert "is on its way." in message
    with org_context(org_a.id):
        assert CampaignEmail.objects.filter(participant=person).count() == 3


def test_resend_outside_an_active_campaign_says_why(org_a, alice, client_for):
    campaign = creator.campaign(org_a, alice, status="paused")
    (person,) = creator.participants_in_bulk(org_a, campaign, 1)
    message = post(client_for(alice), "participant_resend", org_a, campaign, person)
    assert "only while the campaign is active" in message


def test_revoke_and_reissue(org_a, alice, client_for, active):
    campaign, person = active
    with org_context(org_a.id):
        services.link_issue(participant=person)
    message = post(client_for(alice), "participant_revoke", org_a, campaign, person)
    assert "was revoked. A new one is on its way." in message
    with org_context(org_a.id):
        assert ParticipantLink.objects.filter(revoked_at=None).count() == 0
        assert CampaignEmail.objects.filter(participant=person).count() == 1


def test_revoke_and_reissue_right_after_a_resend_still_revokes(org_a, alice, client_for, active):
    """A link was forwarded: the creator resends, then revokes within the minute. The
    revocation must stand; an invitation already sent (or sending) carries a revoked link,
    so a new one goes; one still pending gets its link when it is sent, after the revoke."""
    campaign, person = active
    client = client_for(alice)
    with org_context(org_a.id):
        services.link_issue(participant=person)
    post(client, "participant_resend", org_a, campaign, person)
    message = post(client, "participant_revoke", org_a, campaign, person)
    assert "was revoked. A new one is on its way." in message
    with org_context(org_a.id):
        assert ParticipantLink.objects.filter(revoked_at=None).count() == 0
        assert CampaignEmail.objects.filter(participant=person).count() == 1  # the pending one
        services.link_issue(participant=person)  # it was sent: its link
        CampaignEmail.objects.update(status="sent", sent_at=timezone.now())
    message = post(client, "participant_revoke", org_a, campaign, person)
    assert "was revoked. A new one is on its way." in message
    with org_context(org_a.id):
        assert ParticipantLink.objects.filter(revoked_at=None).count() == 0
        assert CampaignEmail.objects.filter(participant=person).count() == 2
        assert CampaignEmail.objects.filter(participant=person, status="pending").count() == 1


def test_revoke_in_a_paused_campaign_sends_nothing(org_a, alice, client_for):
    campaign = creator.campaign(org_a, alice, status="paused")
    (person,) = creator.participants_in_bulk(org_a, campaign, 1)
    with org_context(org_a.id):
        services.link_issue(participant=person)
    message = post(client_for(alice), "participant_revoke", org_a, campaign, person)
    assert message.endswith("was revoked.")
    with org_context(org_a.id):
        assert ParticipantLink.objects.filter(revoked_at=None).count() == 0
        assert not CampaignEmail.objects.exists()


def test_remove_asks_first_then_removes_the_conversation_too(org_a, alice, client_for, active):
    campaign, person = active
    creator.conversation(org_a, campaign, person, ["Q", "A"])
    client = client_for(alice)
    confirm = client.get(creator.url("participant_remove", org_a, campaign.pk, person.pk))
    assert confirm.status_code == 200
    assert "Their conversation is deleted too" in confirm.content.decode()
    with org_context(org_a.id):
        assert Participant.objects.count() == 1
    message = post(client, "participant_remove", org_a, campaign, person)
    assert f"{person.email} was removed" in message
    with org_context(org_a.id):
        assert not Participant.objects.exists()
        assert not Conversation.objects.exists()
        assert not Message.objects.exists()


@pytest.mark.parametrize("status", ["completed", "archived"])
def test_a_closed_campaign_keeps_its_participants(org_a, alice, client_for, status):
    campaign = creator.campaign(org_a, alice, status=status)
    (person,) = creator.participants_in_bulk(org_a, campaign, 1, statuses=("completed",))
    creator.conversation(org_a, campaign, person, ["Q", "A"])
    client = client_for(alice)
    url = creator.url("participant_remove", org_a, campaign.pk, person.pk)
    page = client.get(creator.url("detail", org_a, campaign.pk)).content.decode()
    assert url not in page
    for method in (client.get, client.post):
        response = method(url, follow=True)
        assert response.redirect_chain[-1][0] == creator.url("detail", org_a, campaign.pk)
        (message,) = creator.messages_of(response)
        assert f"cannot be removed from a {status} campaign" in message
        assert "Erase personal data" in message
    with org_context(org_a.id):
        assert Participant.objects.filter(pk=person.pk).exists()
        assert Conversation.objects.count() == 1


def test_a_participant_of_another_campaign_is_404(org_a, alice, client_for, active):
    campaign, _person = active
    other = creator.campaign(org_a, alice, name="Other", status="active")
    (stranger,) = creator.participants_in_bulk(org_a, other, 1)
    client = client_for(alice)
    for name in ("participant_resend", "participant_revoke", "participant_remove"):
        url = creator.url(name, org_a, campaign.pk, stranger.pk)
        assert client.post(url).status_code == 404
    with org_context(org_a.id):
        assert Participant.objects.filter(pk=stranger.pk).exists()


def test_members_get_403_and_nothing_changes(org_a, bob, client_for, active):
    campaign, person = active
    client = client_for(bob)
    for name in ("participant_resend", "participant_revoke", "participant_remove"):
        url = creator.url(name, org_a, campaign.pk, person.pk)
        assert client.post(url).status_code == 403
    url = creator.url("participant_remove", org_a, campaign.pk, person.pk)
    assert client.get(url).status_code == 403
    with org_context(org_a.id):
        assert Participant.objects.get().status == "bounced"


def test_resend_and_revoke_take_post_only(org_a, alice, client_for, active):
    campaign, person = active
    client = client_for(alice)
    for name in ("participant_resend", "participant_revoke"):
        url = creator.url(name, org_a, campaign.pk, person.pk)
        assert client.get(url).status_code == 405
