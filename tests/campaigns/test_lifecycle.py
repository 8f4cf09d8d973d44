"""The campaign lifecycle: every pair of states, allowed or refused with a message; audit;
what each transition does."""

from datetime import timedelta

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from campaigns import services
from campaigns.models import Campaign, CampaignEmail, Participant
from campaigns.participant_input import parse_pasted
from conversations.models import Conversation
from tap.models import OutboxJob
from tap.orgs.models import AuditEvent
from tap.tenancy import org_context

STATES = [s.value for s in Campaign.Status]
ALLOWED = {
    ("draft", "active"),
    ("active", "paused"),
    ("paused", "active"),
    ("active", "completed"),
    ("paused", "completed"),
    ("completed", "archived"),
    ("draft", "archived"),
}


def make_campaign(org, actor, *, status="draft", participants=("p@example.com",)):
    with org_context(org.id):
        campaign = services.campaign_create(
            actor=actor,
            org=org,
            name="Tooling",
            mission="Learn how engineers use AI tools day to day.",
            opening_question="How did you use AI tools this week?",
        )
        if participants:
            services.participants_add(
                actor=actor, campaign=campaign, parsed=parse_pasted("\n".join(participants))
            )
        if status != "draft":
            Campaign.objects.filter(pk=campaign.pk).update(status=status)
            campaign.refresh_from_db()
    return campaign


@pytest.mark.django_db
@pytest.mark.parametrize("current", STATES)
@pytest.mark.parametrize("target", STATES)
def test_every_pair_of_states(current, target, org_a, alice):
    campaign = make_campaign(org_a, alice, status=current)
    with org_context(org_a.id):
        if (current, target) in ALLOWED:
            services.campaign_transition(actor=alice, campaign=campaign, to=target)
            campaign.refresh_from_db()
            assert campaign.status == target
            event = AuditEvent.objects.get(action=f"campaign.{target}")
            assert event.data == {"old": current, "new": target}
        else:
            with pytest.raises(ValidationError) as refused:
                services.campaign_transition(actor=alice, campaign=campaign, to=target)
            message = " ".join(refused.value.messages)
            assert current in message
            if current == target:
                assert "already" in message
            else:
                assert f"cannot become {target}" in message
            campaign.refresh_from_db()
            assert campaign.status == current
            assert not AuditEvent.objects.filter(
                action__startswith="campaign.", action__in=[f"campaign.{s}" for s in STATES]
            ).exists()


@pytest.mark.django_db
def test_activation_needs_participants(org_a, alice):
    campaign = make_campaign(org_a, alice, participants=())
    with org_context(org_a.id), pytest.raises(ValidationError, match="Add participants"):
        services.campaign_transition(actor=alice, campaign=campaign, to="active")


@pytest.mark.django_db
def test_a_draft_whose_close_date_passed_is_not_activated(org_a, alice):
    campaign = make_campaign(org_a, alice)
    with org_context(org_a.id):
        Campaign.objects.filter(pk=campaign.pk).update(
            closes_at=timezone.now() - timedelta(hours=1)
        )
        with pytest.raises(ValidationError, match=r"close date .* has passed"):
            services.campaign_transition(actor=alice, campaign=campaign, to="active")
        assert Campaign.objects.get(pk=campaign.pk).status == "draft"
        assert not CampaignEmail.objects.exists()
        Campaign.objects.filter(pk=campaign.pk).update(closes_at=None)
        services.campaign_transition(actor=alice, campaign=campaign, to="active")
        assert Campaign.objects.get(pk=campaign.pk).status == "active"


@pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])
def test_activation_invites_everyone_not_yet_invited_once(org_a, alice):
    campaign = make_campaign(org_a, alice, participants=("a@x.example", "b@x.example"))
    with org_context(org_a.id):
        services.campaign_transition(actor=alice, campaign=campaign, to="active")
        assert set(Participant.objects.values_list("status", flat=True)) == {"invited"}
        assert CampaignEmail.objects.filter(kind="invitation").count() == 2
        services.campaign_transition(actor=alice, campaign=campaign, to="paused")
        services.participants_add(
            actor=alice, campaign=campaign, parsed=parse_pasted("c@x.example")
        )
        assert Participant.objects.get(email="c@x.example").status == "pending"
        services.campaign_transition(actor=alice, campaign=campaign, to="active")
        assert CampaignEmail.objects.filter(kind="invitation").count() == 3
    jobs = OutboxJob.objects.using("service").filter(task="campaigns.send_campaign_email")
    assert jobs.count() == 3


@pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])
def test_completion_closes_open_conversations(org_a, alice, client_for):
    from tap import outbox

    campaign = make_campaign(org_a, alice, status="active")
    with org_context(org_a.id):
        participant = Participant.objects.get()
        conversation = Conversation.objects.create(
            organization=org_a, campaign=campaign, participant=participant
        )
        services.campaign_transition(actor=alice, campaign=campaign, to="completed")
    outbox.run_due_inline()
    with org_context(org_a.id):
        conversation.refresh_from_db()
        assert conversation.status == "completed"
        assert conversation.end_reason == "campaign closed"
    # The creator can tell it from a conversation the participant finished.
    client = client_for(alice)
    html = client.get(f"/o/{org_a.slug}/campaigns/{campaign.pk}/responses/").content.decode()
    assert "Closed unfinished" in html
    html = client.get(
        f"/o/{org_a.slug}/campaigns/{campaign.pk}/responses/{conversation.pk}/"
    ).content.decode()
    assert "Closed unfinished" in html


@pytest.mark.django_db
def test_mission_and_question_freeze_once_conversations_exist(org_a, alice):
    campaign = make_campaign(org_a, alice, status="active")
    with org_context(org_a.id):
        Conversation.objects.create(
            organization=org_a, campaign=campaign, participant=Participant.objects.get()
        )
        with pytest.raises(ValidationError, match="already answered"):
            services.campaign_update(
                actor=alice,
                campaign=campaign,
                name=campaign.name,
                mission="A different mission entirely.",
                opening_question=campaign.opening_question,
                settings=campaign.options,
            )
        updated = services.campaign_update(
            actor=alice,
            campaign=campaign,
            name="Renamed",
            mission=campaign.mission,
            opening_question=campaign.opening_question,
            settings=campaign.options.validated(max_follow_ups=6),
        )
        assert (updated.name, updated.options.max_follow_ups) == ("Renamed", 6)


@pytest.mark.django_db
def test_archived_campaigns_are_read_only(org_a, alice):
    campaign = make_campaign(org_a, alice, status="archived")
    with org_context(org_a.id):
        with pytest.raises(ValidationError, match="read-only"):
            services.campaign_update(
                actor=alice,
                campaign=campaign,
                name="x",
                mission=campaign.mission,
                opening_question=campaign.opening_question,
                settings=campaign.options,
            )
        with pytest.raises(ValidationError, match="archived"):
            services.participants_add(
                actor=alice, campaign=campaign, parsed=parse_pasted("n@x.example")
            )


@pytest.mark.django_db
def test_a_campaign_completes_itself_at_its_close_date(org_a, alice):
    campaign = make_campaign(org_a, alice, status="active")
    with org_context(org_a.id):
        Campaign.objects.filter(pk=campaign.pk).update(
            closes_at=timezone.now() - timedelta(minutes=1)
        )
        assert services.campaigns_close_due() == 1
        campaign.refresh_from_db()
        assert campaign.status == "completed"
        assert services.campaigns_close_due() == 0


def test_settings_are_validated_with_clear_messages():
    from campaigns.settings_schema import CampaignSettings

    with pytest.raises(ValidationError) as error:
        CampaignSettings.validated(max_follow_ups=11, tone="snarky", reminder_days=(7, 3))
    assert set(error.value.message_dict) == {"max_follow_ups", "tone", "reminder_days"}
    with pytest.raises(ValidationError, match="At most 3"):
        CampaignSettings.validated(reminder_days=(1, 2, 3, 4))
    assert CampaignSettings.from_json({}).reminder_days == (3, 7)
    assert CampaignSettings.from_json({"tone": "warm", "unknown": 1}).tone == "warm"
