"""Transcripts and the responses list, named or anonymous."""

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.privacy import participant_erase
from conversations.models import Conversation, Message
from tap.tenancy import org_context
from tests.campaigns import creator

pytestmark = pytest.mark.django_db

CHAT = ["How did you use AI tools this week?", "Mostly for tests.", "Which tests?", "Unit tests."]


def test_a_transcript_in_order_with_the_participants_name(org_a, alice, bob, client_for):
    campaign = creator.campaign(org_a, alice, status="active")
    people = creator.participants_in_bulk(org_a, campaign, 2)
    conversation = creator.conversation(org_a, campaign, people[1], CHAT)
    response = client_for(bob).get(creator.url("transcript", org_a, campaign.pk, conversation.pk))
    assert response.status_code == 200
    assert [m.body for m in response.context["chat"]] == CHAT
    html = response.content.decode()
    assert "Person 1 &lt;person00001@x.example&gt;" in html
    positions = [html.index(body) for body in CHAT]
    assert positions == sorted(positions)


def test_anonymous_transcripts_show_a_number_never_a_name(org_a, alice, client_for):
    campaign = creator.campaign(org_a, alice, status="active", anonymous=True)
    people = creator.participants_in_bulk(org_a, campaign, 3)
    start = timezone.now() - timedelta(days=1)
    creator.conversation(org_a, campaign, people[2], ["Q"], start=start)
    second = creator.conversation(
        org_a, campaign, people[0], CHAT, start=start + timedelta(hours=1)
    )
    client = client_for(alice)
    html = client.get(creator.url("transcript", org_a, campaign.pk, second.pk)).content.decode()
    assert "Participant 2" in html
    assert "person00000" not in html
    assert "Person 0" not in html
    listing = client.get(creator.url("responses", org_a, campaign.pk))
    assert [c.label for c in listing.context["page"]] == ["Participant 1", "Participant 2"]
    assert "x.example" not in listing.content.decode()


@pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])
def test_pseudonyms_stay_with_their_conversation_after_an_erasure(org_a, alice, client_for):
    """Erasing participant 2 must not turn participant 3 into "Participant 2" (an analysis or
    an export made before would then point at the wrong person), nor give 2 to a newcomer."""
    campaign = creator.campaign(org_a, alice, status="active", anonymous=True)
    people = creator.participants_in_bulk(org_a, campaign, 4)
    start = timezone.now() - timedelta(days=1)
    made = [
        creator.conversation(org_a, campaign, person, CHAT, start=start + timedelta(hours=i))
        for i, person in enumerate(people[:3])
    ]
    with org_context(org_a.id):
        participant_erase(actor=alice, participant=people[1])
    later = creator.conversation(org_a, campaign, people[3], CHAT)
    client = client_for(alice)
    listing = client.get(creator.url("responses", org_a, campaign.pk))
    assert [c.label for c in listing.context["page"]] == [
        "Participant 1",
        "Participant 3",
        "Participant 4",
    ]
    html = client.get(creator.url("transcript", org_a, campaign.pk, made[2].pk)).content.decode()
    assert "Participant 3" in html
    export = client.get(creator.url("export_csv", org_a, campaign.pk))
    text = b"".join(export.streaming_content).decode()
    assert "Participant 2," not in text
    assert {line.split(",")[0] for line in text.splitlines()[1:]} == {
        "Participant 1",
        "Participant 3",
        "Participant 4",
    }
    with org_context(org_a.id):
        assert Conversation.objects.get(pk=later.pk).number == 4


def test_the_participant_route_says_when_there_is_no_conversation_yet(org_a, alice, client_for):
    campaign = creator.campaign(org_a, alice, status="active")
    (person,) = creator.participants_in_bulk(org_a, campaign, 1)
    client = client_for(alice)
    url = creator.url("participant_transcript", org_a, campaign.pk, person.pk)
    response = client.get(url)
    assert response.status_code == 200
    assert "has not started a conversation yet" in response.content.decode()
    conversation = creator.conversation(org_a, campaign, person, CHAT)
    response = client.get(url)
    assert response["Location"] == creator.url("transcript", org_a, campaign.pk, conversation.pk)


def test_in_an_anonymous_campaign_the_participant_route_leads_nowhere(org_a, alice, client_for):
    campaign = creator.campaign(org_a, alice, status="active", anonymous=True)
    (person,) = creator.participants_in_bulk(org_a, campaign, 1)
    conversation = creator.conversation(org_a, campaign, person, CHAT)
    response = client_for(alice).get(
        creator.url("participant_transcript", org_a, campaign.pk, person.pk)
    )
    assert response.status_code == 200
    html = response.content.decode()
    assert "not linked to participants" in html
    assert str(conversation.pk) not in html
    assert person.email not in html


def test_a_conversation_of_another_campaign_is_404(org_a, alice, client_for):
    campaign = creator.campaign(org_a, alice, status="active")
    other = creator.campaign(org_a, alice, name="Other", status="active")
    (person,) = creator.participants_in_bulk(org_a, other, 1)
    conversation = creator.conversation(org_a, other, person, CHAT)
    url = creator.url("transcript", org_a, campaign.pk, conversation.pk)
    assert client_for(alice).get(url).status_code == 404


def test_a_running_conversation_updates_live_and_stops_polling_once_ended(org_a, alice, client_for):
    campaign = creator.campaign(org_a, alice, status="active")
    (person,) = creator.participants_in_bulk(org_a, campaign, 1)
    conversation = creator.conversation(org_a, campaign, person, CHAT[:2])
    client = client_for(alice)
    url = creator.url("transcript", org_a, campaign.pk, conversation.pk)
    page = client.get(url)
    html = page.content.decode()
    assert f'<div id="transcript-live" hx-get="{url}" hx-trigger="every 2s"' in html
    assert "HX-Request" in page["Vary"]

    with org_context(org_a.id):
        Message.objects.create(
            organization=org_a,
            conversation=conversation,
            sender="bot",
            body="Which tests, <b>exactly</b>?",
            client_key="reply-1",
            turn=1,
        )
    live = client.get(url, HTTP_HX_REQUEST="true")
    assert live.status_code == 200
    html = live.content.decode()
    assert html.lstrip().startswith('<div id="transcript-live"')
    assert "<html" not in html
    assert "Which tests, &lt;b&gt;exactly&lt;/b&gt;?" in html
    assert "every 2s" in html

    with org_context(org_a.id):
        Conversation.objects.filter(pk=conversation.pk).update(
            status="completed", ended_at=timezone.now(), end_reason="mission covered"
        )
    ended = client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "every 2s" not in ended
    assert "mission covered" in ended


def test_the_offline_interviewer_is_labelled(org_a, alice, client_for, settings):
    campaign = creator.campaign(org_a, alice, status="active")
    (person,) = creator.participants_in_bulk(org_a, campaign, 1)
    conversation = creator.conversation(org_a, campaign, person, CHAT)
    client = client_for(alice)
    detail = creator.url("detail", org_a, campaign.pk)
    transcript = creator.url("transcript", org_a, campaign.pk, conversation.pk)
    settings.ANTHROPIC_API_KEY = ""
    for url in (detail, transcript):
        assert ">offline interviewer</span>" in client.get(url).content.decode()
    settings.ANTHROPIC_API_KEY = "sk-ant-test"  # the real backend: no label
    for url in (detail, transcript):
        assert "offline interviewer" not in client.get(url).content.decode()
