"""The mission summary: written by the AI backend in a worker after save, editable, and never
overwriting a person's edit."""

import pytest

from campaigns import services
from campaigns.models import Campaign
from tap import outbox
from tap.tenancy import org_context

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])

MISSION = (
    "Find out where our onboarding for new engineers wastes their first week, and what they "
    "would change first. We also want to hear about documentation."
)


def create(org, actor):
    with org_context(org.id):
        return services.campaign_create(
            actor=actor,
            org=org,
            name="Onboarding",
            mission=MISSION,
            opening_question="What slowed you down in your first week?",
        )


def test_the_offline_backend_writes_a_one_sentence_summary_after_save(org_a, alice):
    campaign = create(org_a, alice)
    assert campaign.mission_summary == ""
    outbox.run_due_inline()
    with org_context(org_a.id):
        campaign.refresh_from_db()
    assert campaign.mission_summary == (
        "Find out where our onboarding for new engineers wastes their first week, and what "
        "they would change first."
    )


def test_a_cleared_summary_is_written_again(org_a, alice):
    campaign = create(org_a, alice)
    outbox.run_due_inline()
    with org_context(org_a.id):
        campaign.refresh_from_db()
        assert campaign.mission_summary
        for summary in ("My own words.", ""):  # edited, then cleared: "written for you"
            services.campaign_update(
                actor=alice,
                campaign=campaign,
                name=campaign.name,
                mission=campaign.mission,
                opening_question=campaign.opening_question,
                settings=campaign.options,
                mission_summary=summary,
            )
    outbox.run_due_inline()
    with org_context(org_a.id):
        again = Campaign.objects.get()
    assert again.mission_summary.startswith("Find out where our onboarding")
    assert not again.mission_summary_edited


def test_a_persons_edit_is_kept(org_a, alice):
    campaign = create(org_a, alice)
    with org_context(org_a.id):
        services.campaign_update(
            actor=alice,
            campaign=campaign,
            name=campaign.name,
            mission=MISSION + " And tooling.",
            opening_question=campaign.opening_question,
            settings=campaign.options,
            mission_summary="Onboarding pain points.",
        )
    outbox.run_due_inline()
    with org_context(org_a.id):
        assert Campaign.objects.get().mission_summary == "Onboarding pain points."


def test_the_sweeper_runs_per_org_and_sends_due_reminders(org_a, org_b, alice, charlie):
    from datetime import timedelta

    import time_machine
    from django.utils import timezone

    from campaigns.models import CampaignEmail
    from campaigns.participant_input import parse_pasted
    from campaigns.tasks import sweep

    for org, actor in ((org_a, alice), (org_b, charlie)):
        campaign = create(org, actor)
        with org_context(org.id):
            services.participants_add(
                actor=actor, campaign=campaign, parsed=parse_pasted("p@x.example")
            )
            services.campaign_transition(actor=actor, campaign=campaign, to="active")
    outbox.run_due_inline()  # the invitations go out (no reminder for one that did not)
    assert sweep() == {"reminders": 0, "closed": 0}
    with time_machine.travel(timezone.now() + timedelta(days=3, minutes=1)):
        assert sweep() == {"reminders": 2, "closed": 0}
        assert sweep() == {"reminders": 0, "closed": 0}
    with time_machine.travel(timezone.now() + timedelta(days=7, minutes=1)):
        assert sweep()["reminders"] == 2
    for org in (org_a, org_b):
        with org_context(org.id):
            assert list(
                CampaignEmail.objects.filter(kind="reminder")
                .values_list("sequence", flat=True)
                .order_by("sequence")
            ) == [1, 2]
