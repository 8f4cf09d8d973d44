"""Creating and editing campaigns through the pages: settings, validation, frozen mission."""

import re
from datetime import UTC, date, timedelta

import pytest
from django.core.exceptions import ValidationError

from campaigns import services
from campaigns.forms import CampaignForm
from campaigns.models import Campaign, Participant
from tap.orgs.models import AuditEvent
from tap.tenancy import org_context
from tests.campaigns import creator

pytestmark = pytest.mark.django_db

VALID = {
    "name": "Tooling",
    "mission": creator.MISSION,
    "opening_question": creator.QUESTION,
    "max_follow_ups": "6",
    "tone": "warm",
    "language": "German",
    "anonymous": "on",
    "closing_message": "Danke!",
    "reminder_days": "2; 5",
    "closes_on": "",
}


def test_create_stores_the_settings_and_leads_to_adding_participants(org_a, alice, client_for):
    client = client_for(alice)
    assert client.get(creator.url("create", org_a)).status_code == 200
    closes = (date.today() + timedelta(days=10)).isoformat()
    response = client.post(creator.url("create", org_a), {**VALID, "closes_on": closes})
    with org_context(org_a.id):
        campaign = Campaign.objects.get()
        assert AuditEvent.objects.filter(action="campaign.created").exists()
    assert response.status_code == 302
    assert response["Location"] == creator.url("participants_add", org_a, campaign.pk)
    options = campaign.options
    assert (options.max_follow_ups, options.tone, options.language) == (6, "warm", "German")
    assert options.anonymous is True
    assert options.reminder_days == (2, 5)
    assert options.closing_message == "Danke!"
    assert campaign.closes_at.astimezone(UTC).date().isoformat() == closes
    assert campaign.created_by == alice


def test_a_double_click_on_create_makes_one_campaign(org_a, alice, dave, client_for):
    import time_machine
    from django.utils import timezone

    client = client_for(alice)
    first = client.post(creator.url("create", org_a), VALID)
    second = client.post(creator.url("create", org_a), VALID)
    assert first["Location"] == second["Location"]
    with org_context(org_a.id):
        assert Campaign.objects.count() == 1
    # Another person, another name, or the same a minute later: a campaign of its own.
    client_for(dave).post(creator.url("create", org_a), VALID)
    client.post(creator.url("create", org_a), {**VALID, "name": "Tooling 2"})
    with time_machine.travel(timezone.now() + timedelta(minutes=1)):
        client.post(creator.url("create", org_a), VALID)
    with org_context(org_a.id):
        assert Campaign.objects.count() == 4


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("max_follow_ups", "11", "less than or equal to 10"),
        ("max_follow_ups", "0", "greater than or equal to 1"),
        ("reminder_days", "3, seven", "whole numbers"),
        ("reminder_days", "1, 2, 3, 4", "At most 3"),
        ("reminder_days", "7, 3", "increasing order"),
        ("tone", "snarky", "Select a valid choice"),
        ("mission", "short", "Describe the mission"),
        ("closes_on", "2001-01-01", "today or a later day"),
    ],
)
def test_bad_input_is_shown_on_the_field(org_a, alice, client_for, field, value, message):
    response = client_for(alice).post(creator.url("create", org_a), {**VALID, field: value})
    assert response.status_code == 200
    assert any(message in e for e in response.context["form"].errors[field])
    with org_context(org_a.id):
        assert not Campaign.objects.exists()


def test_members_cannot_open_the_create_page(org_a, bob, client_for):
    assert client_for(bob).get(creator.url("create", org_a)).status_code == 403


def test_edit_shows_current_values_and_saves(org_a, alice, client_for):
    campaign = creator.campaign(org_a, alice)
    client = client_for(alice)
    page = client.get(creator.url("edit", org_a, campaign.pk))
    assert page.context["form"].initial["reminder_days"] == "3, 7"
    response = client.post(
        creator.url("edit", org_a, campaign.pk),
        {**VALID, "name": "Renamed", "mission_summary": "My own words."},
    )
    assert response["Location"] == creator.url("detail", org_a, campaign.pk)
    with org_context(org_a.id):
        campaign.refresh_from_db()
    assert campaign.name == "Renamed"
    assert campaign.mission_summary == "My own words."
    assert campaign.mission_summary_edited is True


def test_mission_edits_are_refused_once_people_answered_with_the_reason(org_a, alice, client_for):
    campaign = creator.campaign(org_a, alice, status="active")
    (participant,) = creator.participants_in_bulk(org_a, campaign, 1)
    creator.conversation(org_a, campaign, participant, ["Hi", "Hello"])
    client = client_for(alice)
    page = client.get(creator.url("edit", org_a, campaign.pk))
    assert "can no longer change" in page.content.decode()
    data = {**VALID, "mission": "A different mission entirely.", "mission_summary": ""}
    response = client.post(creator.url("edit", org_a, campaign.pk), data)
    assert response.status_code == 200
    assert "participants have already answered them" in " ".join(
        response.context["form"].non_field_errors()
    )
    # Settings alone still save.
    response = client.post(
        creator.url("edit", org_a, campaign.pk),
        {**VALID, "mission": creator.MISSION, "max_follow_ups": "9", "mission_summary": ""},
    )
    assert response.status_code == 302
    with org_context(org_a.id):
        assert Campaign.objects.get().options.max_follow_ups == 9
        assert Participant.objects.count() == 1


def test_anonymity_cannot_be_switched_off_once_people_were_invited(org_a, alice, client_for):
    """People answered on the promise of anonymity: turning it off would name them."""
    campaign = creator.campaign(org_a, alice, status="active", anonymous=True)
    client = client_for(alice)
    page = client.get(creator.url("edit", org_a, campaign.pk))
    assert page.context["form"].fields["anonymous"].disabled
    assert "stays anonymous" in page.content.decode()
    box = re.search(r'<input type="checkbox"[^>]*name="anonymous"[^>]*>', page.content.decode())
    assert " disabled" in box.group()  # the person sees it cannot be unticked
    # A forged POST without the box keeps it on (a disabled field keeps its value) …
    data = {k: v for k, v in VALID.items() if k != "anonymous"}
    response = client.post(
        creator.url("edit", org_a, campaign.pk), {**data, "name": "Renamed", "mission_summary": ""}
    )
    assert response.status_code == 302
    with org_context(org_a.id):
        campaign.refresh_from_db()
    assert (campaign.name, campaign.options.anonymous) == ("Renamed", True)
    # … and the service refuses it whoever calls it.
    form = CampaignForm({**data, "mission_summary": ""})
    assert form.is_valid(), form.errors
    with org_context(org_a.id), pytest.raises(ValidationError, match="stays anonymous"):
        services.campaign_update(
            actor=alice,
            campaign=campaign,
            name="x",
            mission=campaign.mission,
            opening_question=campaign.opening_question,
            settings=form.cleaned_data["settings"],
        )
    with org_context(org_a.id):
        assert Campaign.objects.get().options.anonymous is True


def test_a_draft_may_still_stop_being_anonymous(org_a, alice, client_for):
    campaign = creator.campaign(org_a, alice, anonymous=True)
    client = client_for(alice)
    data = {k: v for k, v in VALID.items() if k != "anonymous"}
    response = client.post(creator.url("edit", org_a, campaign.pk), {**data, "mission_summary": ""})
    assert response.status_code == 302
    with org_context(org_a.id):
        assert Campaign.objects.get().options.anonymous is False


def test_archived_campaigns_cannot_be_edited(org_a, alice, client_for):
    campaign = creator.campaign(org_a, alice, status="archived")
    response = client_for(alice).post(
        creator.url("edit", org_a, campaign.pk), {**VALID, "mission_summary": ""}
    )
    assert "read-only" in " ".join(response.context["form"].non_field_errors())


def test_a_completed_campaign_keeps_its_settings_but_may_be_renamed(org_a, alice, client_for):
    """Reminders, a close date or the interviewer's settings mean nothing once a campaign has
    completed, and changing them would misstate how it ran: only the name and summary move."""
    campaign = creator.campaign(org_a, alice, status="completed")
    with org_context(org_a.id):
        before = Campaign.objects.get(pk=campaign.pk).settings
    client = client_for(alice)
    page = client.get(creator.url("edit", org_a, campaign.pk))
    assert "This campaign is completed" in page.content.decode()
    assert page.context["form"].fields["reminder_days"].disabled
    assert not page.context["form"].fields["name"].disabled
    html = page.content.decode()
    assert 'name="reminder_days"' in html
    assert html.count(" disabled") >= 9  # shown disabled, not just ignored on save
    assert re.search(r'<input [^>]*name="name"[^>]*>', html)
    assert " disabled" not in re.search(r'<input [^>]*name="name"[^>]*>', html).group()
    assert " disabled" in re.search(r'<input [^>]*name="reminder_days"[^>]*>', html).group()
    response = client.post(
        creator.url("edit", org_a, campaign.pk),
        {**VALID, "name": "Tooling 2026", "mission_summary": "Done.", "closes_on": "2099-01-01"},
    )
    assert response["Location"] == creator.url("detail", org_a, campaign.pk)
    with org_context(org_a.id):
        campaign.refresh_from_db()
        assert (campaign.name, campaign.mission_summary) == ("Tooling 2026", "Done.")
        assert campaign.settings == before  # the disabled fields kept their values
        assert campaign.closes_at is None
        # The service says no too, whatever the form.
        with pytest.raises(ValidationError, match="This campaign is completed"):
            services.campaign_update(
                actor=alice,
                campaign=campaign,
                name=campaign.name,
                mission=campaign.mission,
                opening_question=campaign.opening_question,
                settings=campaign.options.__class__.validated(
                    **{**campaign.options.to_json(), "reminder_days": [1]}
                ),
            )


def test_another_orgs_campaign_is_404(org_a, org_b, alice, charlie, client_for):
    campaign = creator.campaign(org_b, charlie)
    client = client_for(alice)
    assert client.get(creator.url("edit", org_a, campaign.pk)).status_code == 404
    assert client.post(creator.url("edit", org_a, campaign.pk), VALID).status_code == 404
