"""Reminders: the beat sweeper sends them on the campaign's schedule (default 3 and 7 days
after the invitation), each with a fresh link, and never to people who finished or declined."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from campaigns import services
from campaigns.models import CampaignEmail, Participant
from campaigns.tasks import sweep
from tap import outbox
from tap.tenancy import org_context
from tests.campaigns import creator
from tests.campaigns.test_participant_links import OPENING, active_campaign, link_in

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])

EMAILS = ("todo@example.com", "done@example.com", "declined@example.com", "started@example.com")


def at(start, days: float, hours: float = 0):
    return time_machine.travel(start + timedelta(days=days, hours=hours), tick=False)


def sweep_and_send() -> list[str]:
    """Run the sweeper and the outbox; the addresses that got a reminder."""
    before = len(mail.outbox)
    queued = sweep()["reminders"]
    outbox.run_due_inline()
    sent = [m.to[0] for m in mail.outbox[before:]]
    assert len(sent) == queued
    return sorted(sent)


@pytest.fixture
def campaign(alice, org_a):
    start = timezone.now()
    with at(start, 0):
        campaign = active_campaign(org_a, alice, emails=EMAILS)
    with org_context(org_a.id):
        Participant.objects.filter(email="done@example.com").update(status="completed")
        Participant.objects.filter(email="started@example.com").update(status="in_progress")
        services.participant_decline(participant=Participant.objects.get(email=EMAILS[2]))
    mail.outbox.clear()
    campaign.start = start
    return campaign


def test_reminders_follow_the_default_schedule_and_skip_finished_and_declined(campaign, org_a):
    start = campaign.start
    expected = ["started@example.com", "todo@example.com"]
    with at(start, 2, 23):
        assert sweep_and_send() == []
    with at(start, 3, 1):
        assert sweep_and_send() == expected
    with at(start, 3, 2):
        assert sweep_and_send() == []  # a second sweep queues nothing twice
    with at(start, 6, 23):
        assert sweep_and_send() == []
    with at(start, 7, 1):
        assert sweep_and_send() == expected
    with at(start, 30):
        assert sweep_and_send() == []  # two reminders, no more
    with org_context(org_a.id):
        rows = CampaignEmail.objects.filter(kind="reminder").select_related("participant")
        assert sorted((r.participant.email, r.sequence, r.status) for r in rows) == [
            ("started@example.com", 1, "sent"),
            ("started@example.com", 2, "sent"),
            ("todo@example.com", 1, "sent"),
            ("todo@example.com", 2, "sent"),
        ]
        todo = Participant.objects.get(email="todo@example.com")
        assert todo.reminders_sent == 2


def test_no_reminder_when_the_invitation_never_left(campaign, org_a, alice, client_for):
    """The invitation failed for good (the SMTP server refused it on every try): the person
    never heard of the campaign, so a "reminder" would be wrong. The campaign page says so."""
    with org_context(org_a.id):
        CampaignEmail.objects.filter(participant__email="todo@example.com").update(
            status="failed", error="SMTPServerDisconnected: Connection unexpectedly closed"
        )
        # Someone who opened the link got it one way or another: they are reminded.
        CampaignEmail.objects.filter(participant__email="started@example.com").update(
            status="failed", error="timed out"
        )
    with at(campaign.start, 3, 1):
        assert sweep_and_send() == ["started@example.com"]
    html = client_for(alice).get(creator.url("detail", org_a, campaign.pk)).content.decode()
    assert "The invitation could not be sent (SMTPServerDisconnected" in html
    assert "Resend it from Actions." in html
    assert html.count("could not be sent") == 1  # not for the one who has started


def test_reminders_count_from_the_invitation_that_went_out(campaign, org_a, alice):
    """An invitation failed; days later it is resent and arrives. No reminder minutes later:
    the schedule counts from the invitation that went out."""
    with org_context(org_a.id):
        CampaignEmail.objects.filter(participant__email="todo@example.com").update(
            status="failed", sent_at=None, error="SMTP refused"
        )
    with at(campaign.start, 4):
        with org_context(org_a.id):
            services.participant_resend(
                actor=alice, participant=Participant.objects.get(email="todo@example.com")
            )
        outbox.run_due_inline()  # the resent invitation goes out now, on day 4
        assert "todo@example.com" not in sweep_and_send()
    with at(campaign.start, 6, 23):  # 2 days 23 hours after it went out
        assert "todo@example.com" not in sweep_and_send()
    with at(campaign.start, 7, 1):
        assert "todo@example.com" in sweep_and_send()


def test_a_reminder_says_it_is_one_and_carries_a_new_link(campaign, org_a):
    with at(campaign.start, 3, 1):
        sweep_and_send()
    reminder = next(m for m in mail.outbox if m.to == ["todo@example.com"])
    assert reminder.subject == "Reminder: Org A would like your feedback on Tooling"
    assert "A reminder" in reminder.body
    assert "A reminder" in reminder.alternatives[0][0]
    assert OPENING in reminder.body
    assert link_in(reminder).startswith("/c/")


def test_after_a_long_outage_reminders_keep_their_spacing(campaign, org_a):
    # The sweeper did not run for ten days: one reminder now, the next four days later.
    with at(campaign.start, 10):
        assert sweep_and_send() == ["started@example.com", "todo@example.com"]
        assert sweep_and_send() == []
    with at(campaign.start, 13, 23):
        assert sweep_and_send() == []
    with at(campaign.start, 14, 1):
        assert sweep_and_send() == ["started@example.com", "todo@example.com"]


def test_a_paused_campaign_sends_no_reminders_until_it_resumes(campaign, alice, org_a):
    with org_context(org_a.id):
        services.campaign_transition(actor=alice, campaign=campaign, to="paused")
    with at(campaign.start, 4):
        assert sweep_and_send() == []
        with org_context(org_a.id):
            services.campaign_transition(actor=alice, campaign=campaign, to="active")
        assert sweep_and_send() == ["started@example.com", "todo@example.com"]


def test_someone_who_finishes_before_their_reminder_gets_none(campaign, org_a):
    with at(campaign.start, 3, 1):
        sweep()  # queued …
        with org_context(org_a.id):  # … and they finish before the worker sends it
            Participant.objects.filter(email="todo@example.com").update(status="completed")
        outbox.run_due_inline()
    assert [m.to[0] for m in mail.outbox] == ["started@example.com"]


def test_a_participant_who_declined_and_then_answers_still_gets_no_reminder(campaign, org_a):
    from conversations import services as conversation_services

    with org_context(org_a.id):
        declined = Participant.objects.get(email="declined@example.com")
        conversation_services.message_post(
            participant=declined, body="I changed my mind, here goes.", client_key="k" * 16
        )
        declined.refresh_from_db()
        # Still no emails: answering is not asking for them again.
        assert declined.status == "declined"
        assert declined.last_activity_at is not None
    with at(campaign.start, 3, 1):
        assert "declined@example.com" not in sweep_and_send()
    with org_context(org_a.id):
        conversation_services.conversation_end_by_participant(participant=declined)
        declined.refresh_from_db()
        assert declined.status == "completed"
