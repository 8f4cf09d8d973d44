"""`manage.py participant_link`: a fresh working link on one line, audited without the
token; clear errors. And `seed_demo`'s campaign, which support staff would try it on."""

from __future__ import annotations

from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.test import Client

from campaigns.models import Campaign, CampaignEmail, Participant, ParticipantLink
from tap.orgs.models import AuditEvent, Organization
from tap.tenancy import org_context
from tests.campaigns.test_participant_links import active_campaign

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])


def participant_link(**options) -> str:
    out = StringIO()
    call_command("participant_link", stdout=out, **options)
    return out.getvalue()


def test_prints_a_fresh_working_link_and_audits_it_without_the_token(alice, org_a):
    campaign = active_campaign(org_a, alice)
    output = participant_link(org=org_a.slug, campaign="Tooling", email="P@Example.com")
    assert output.count("\n") == 1
    url = output.strip()
    assert url.startswith("http://testserver/c/")
    token = url.removeprefix("http://testserver/c/").strip("/")

    client = Client()
    assert client.get(url.removeprefix("http://testserver"))["Location"] == "/c/"
    assert "Tooling" in client.get("/c/").content.decode()

    with org_context(org_a.id):
        assert ParticipantLink.objects.count() == 2  # the emailed one still works too
        event = AuditEvent.objects.get(action="participant.link_issued")
        participant = Participant.objects.get()
    assert event.target_id == str(participant.pk)
    assert event.data["email"] == "p@example.com"
    assert token not in str(event.data)
    # By id too.
    assert participant_link(org=org_a.slug, campaign=str(campaign.pk), email="p@example.com")


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"org": "nope"}, "No organisation with slug 'nope'"),
        ({"campaign": "Other"}, "No campaign 'Other' in this organisation"),
        ({"email": "x@example.com"}, "'x@example.com' is not a participant of campaign"),
    ],
)
def test_unknown_org_campaign_or_participant_is_a_clear_error(alice, org_a, options, message):
    active_campaign(org_a, alice)
    given = {"org": org_a.slug, "campaign": "Tooling", "email": "p@example.com", **options}
    with pytest.raises(CommandError, match=message):
        participant_link(**given)
    with org_context(org_a.id):
        assert ParticipantLink.objects.count() == 1


def test_another_orgs_campaign_is_not_found(alice, charlie, org_a, org_b):
    campaign = active_campaign(org_a, alice)
    with pytest.raises(CommandError, match="No campaign"):
        participant_link(org=org_b.slug, campaign=str(campaign.pk), email="p@example.com")


def test_seed_demo_adds_an_active_campaign_with_five_invited_participants_once():
    for _ in range(2):
        call_command("seed_demo", stdout=StringIO())
    org = Organization.objects.using("service").get(slug="demo")
    with org_context(org.pk):
        campaign = Campaign.objects.get(name="Developer experience with AI tools")
        assert campaign.status == "active"
        assert campaign.opening_question
        participants = list(Participant.objects.order_by("email").values_list("email", "status"))
        assert participants == [(f"f{n}@example.com", "completed") for n in range(1, 5)] + [
            (f"p{n}@example.com", "invited") for n in range(1, 6)
        ]
        assert CampaignEmail.objects.filter(kind="invitation").count() == 5
        from conversations.models import Conversation, Message

        assert set(Conversation.objects.values_list("status", flat=True)) == {"completed"}
        assert Conversation.objects.count() == 4
        assert Message.objects.filter(sender="participant").count() == 8
    url = participant_link(
        org="demo", campaign="Developer experience with AI tools", email="p3@example.com"
    )
    client = Client()
    assert client.get(url.strip().removeprefix("http://testserver")).status_code == 302
    assert "Developer experience with AI tools" in client.get("/c/").content.decode()
