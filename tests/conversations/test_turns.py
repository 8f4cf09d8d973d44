"""Participant turns and interviewer replies: idempotent posts, exactly one reply per turn,
ending, resuming, abandonment — with the offline interviewer and the real outbox."""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import pytest
import time_machine
from django.core.exceptions import ValidationError
from django.db import connections
from django.utils import timezone

from campaigns.models import Participant
from conversations import services
from conversations.models import Conversation, Message
from tap import outbox
from tap.models import OutboxJob
from tap.tenancy import org_context
from tests.campaigns.test_lifecycle import make_campaign

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])


def key() -> str:
    return uuid.uuid4().hex


@pytest.fixture
def participant(org_a, alice):
    make_campaign(org_a, alice, status="active")
    with org_context(org_a.id):
        return Participant.objects.select_related("campaign").get()


def post(org, participant, body, client_key=None):
    with org_context(org.id):
        return services.message_post(
            participant=participant, body=body, client_key=client_key or key()
        )


def transcript(org):
    with org_context(org.id):
        return list(Message.objects.order_by("turn", "created_at").values_list("sender", "turn"))


def conversation(org):
    with org_context(org.id):
        return Conversation.objects.get()


def test_a_turn_is_stored_once_per_client_key_and_answered_once(org_a, participant):
    k = key()
    first, created = post(org_a, participant, "We lose a day a week to flaky CI.", k)
    again, created_again = post(org_a, participant, "We lose a day a week to flaky CI.", k)
    assert (created, created_again) == (True, False)
    assert again.pk == first.pk
    outbox.run_due_inline()
    replies = OutboxJob.objects.using("service").filter(task="conversations.reply")
    assert [(j.status, j.kwargs["turn"]) for j in replies] == [("done", 1)]
    # The same reply job delivered again stores nothing more.
    OutboxJob.objects.using("service").filter(task="conversations.reply").update(
        status="pending", available_at=timezone.now()
    )
    outbox.run_due_inline()
    assert transcript(org_a) == [("bot", 0), ("participant", 1), ("bot", 1)]
    with org_context(org_a.id):
        reply = Message.objects.get(sender="bot", turn=1)
        assert reply.model
        assert participant.__class__.objects.get().status == "in_progress"


def test_bad_messages_are_refused_with_a_clear_message(org_a, participant):
    with pytest.raises(ValidationError, match="Write an answer"):
        post(org_a, participant, "   ")
    with pytest.raises(ValidationError, match="under 5,000 characters"):
        post(org_a, participant, "x" * 5001)
    with pytest.raises(ValidationError, match="form expired"):
        post(org_a, participant, "fine", client_key="<bad key>")
    assert ("participant", 1) not in transcript(org_a)


def test_a_post_while_the_reply_is_pending_is_refused_politely(org_a, participant):
    post(org_a, participant, "First answer, about reviews.")
    with pytest.raises(ValidationError, match="wait for the interviewer"):
        post(org_a, participant, "Second answer before the reply")
    assert transcript(org_a) == [("bot", 0), ("participant", 1)]


def test_two_clients_posting_at_once_make_one_turn(org_a, participant):
    services_errors, barrier = [], threading.Barrier(2)

    def send(text):
        barrier.wait()
        try:
            post(org_a, participant, text)
        except ValidationError as exc:
            services_errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=send, args=(t,)) for t in ("from the laptop", "phone")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(services_errors) == 1
    assert transcript(org_a) == [("bot", 0), ("participant", 1)]


def test_a_reply_for_a_turn_that_moved_on_is_dropped(org_a, participant):
    from tap.ai import InterviewReply

    post(org_a, participant, "An answer")
    with org_context(org_a.id):
        services.conversation_end_by_participant(participant=participant)
        stored = services.reply_store(
            conversation_id=conversation(org_a).pk,
            turn=1,
            reply=InterviewReply(text="Late question?", end=False, end_reason="", model="m"),
        )
    assert stored is None


def test_the_interviewer_ends_at_the_follow_up_limit(org_a, participant):
    from campaigns.models import Campaign

    with org_context(org_a.id):
        campaign = Campaign.objects.get()
        campaign.settings = {**campaign.settings, "max_follow_ups": 1}
        campaign.save(update_fields=["settings"])
    post(org_a, participant, "Code review takes two days because reviewers are busy.")
    outbox.run_due_inline()
    assert conversation(org_a).status == "active"
    post(org_a, participant, "Mostly the senior engineers, they review everything.")
    outbox.run_due_inline()
    done = conversation(org_a)
    assert (done.status, done.end_reason) == ("completed", "follow-up limit reached")
    with org_context(org_a.id):
        last = Message.objects.filter(sender="bot").order_by("-turn").first()
        assert campaign.options.closing_message in last.body
        assert Participant.objects.get().status == "completed"
    with pytest.raises(ValidationError, match="ended"):
        post(org_a, participant, "One more thing")


def test_the_participant_can_end_it(org_a, participant):
    post(org_a, participant, "Short answer")
    outbox.run_due_inline()
    with org_context(org_a.id):
        services.conversation_end_by_participant(participant=participant)
    done = conversation(org_a)
    assert (done.status, done.end_reason) == ("completed", "participant ended")
    assert transcript(org_a)[-1] == ("bot", 2)


def test_leaving_and_coming_back_continues_and_abandoned_ones_reopen(org_a, participant):
    post(org_a, participant, "First answer about documentation.")
    outbox.run_due_inline()
    with time_machine.travel(timezone.now() + timedelta(hours=73)), org_context(org_a.id):
        assert services.conversations_abandon_idle(idle_hours=72) == 1
    assert conversation(org_a).status == "abandoned"
    post(org_a, participant, "Back again: the docs are still out of date.")
    assert conversation(org_a).status == "active"
    assert [t for s, t in transcript(org_a) if s == "participant"] == [1, 2]


def test_a_conversation_over_its_budget_ends_politely(org_a, participant, settings):
    settings.TAP_MAX_TURNS_PER_CONVERSATION = 1
    post(org_a, participant, "First answer")
    outbox.run_due_inline()
    assert conversation(org_a).status == "active"
    post(org_a, participant, "Second answer")
    outbox.run_due_inline()
    done = conversation(org_a)
    assert (done.status, done.end_reason) == ("completed", "length limit reached")


def test_an_org_over_its_daily_budget_gets_a_calm_message(org_a, participant, settings):
    settings.TAP_ORG_DAILY_TOKEN_BUDGET = 1
    with org_context(org_a.id):
        conv = services.conversation_open(participant=participant)
        Message.objects.filter(conversation=conv).update(tokens_in=5, tokens_out=5)
    post(org_a, participant, "An answer")
    outbox.run_due_inline()
    stuck = conversation(org_a)
    assert stuck.awaiting_reply is False
    assert "try again" in stuck.reply_error
    assert ("bot", 1) not in transcript(org_a)


def test_a_reply_whose_worker_died_on_every_attempt_lets_the_participant_ask_again(
    org_a, participant
):
    """A worker killed while replying (or past the hard time limit) never reaches the task's
    own error handling: once the relay gives the job up, the participant is told and can ask
    again, instead of waiting on "the interviewer is typing" for ever."""
    post(org_a, participant, "The build takes forty minutes.")
    past = timezone.now() - timedelta(seconds=1)
    replies = OutboxJob.objects.using("service").filter(task="conversations.reply")
    replies.update(status="running", attempts=5, max_attempts=5, available_at=past)
    assert conversation(org_a).awaiting_reply is True
    outbox.relay_once(publish=lambda job: None)
    assert replies.get().status == "dead"
    stuck = conversation(org_a)
    assert stuck.awaiting_reply is False
    assert "try again" in stuck.reply_error
    with org_context(org_a.id):
        services.reply_retry(conversation=stuck)
    outbox.run_due_inline()
    assert ("bot", 1) in transcript(org_a)


def test_the_participant_row_tracks_status_and_activity_to_the_minute(org_a, participant):
    def reload():
        with org_context(org_a.id):
            return Participant.objects.select_related("campaign").get()

    with time_machine.travel("2026-11-23 10:00:00 +0000", tick=False):
        post(org_a, participant, "Flaky CI costs us a day a week.")
        first = reload()
        assert first.status == Participant.Status.IN_PROGRESS
        assert first.last_activity_at == timezone.now()
        outbox.run_due_inline()
    with time_machine.travel("2026-11-23 10:00:30 +0000", tick=False):
        post(org_a, first, "Mostly the integration suite.")
        assert reload().last_activity_at == first.last_activity_at  # within the minute
    # A minute on, the next post writes it again (the rule, without a third turn that the
    # interviewer might already have closed).
    later = first.last_activity_at + services.PARTICIPANT_ACTIVITY_GRAIN
    assert services._participant_touch_due(first, later)
    assert not services._participant_touch_due(first, later - timedelta(seconds=1))
    first.status = Participant.Status.COMPLETED
    assert not services._participant_touch_due(first, later)


@pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])
def test_the_beat_sweeps_visit_each_organisation_once(org_a, org_b, alice, charlie):
    """One transaction per organisation, however many campaigns and conversations it has
    (the models' default ordering once made DISTINCT repeat an organisation per row)."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from conversations.tasks import analysis_daily, sweep
    from tests.campaigns import creator

    for org, actor, count in ((org_a, alice, 3), (org_b, charlie, 1)):
        for n in range(count):
            campaign = creator.campaign(org, actor, name=f"C{n}", status="active")
            (person,) = creator.participants_in_bulk(org, campaign, 1)
            creator.conversation(org, campaign, person, [creator.QUESTION, "An answer."])

    for task in (sweep, analysis_daily):
        with CaptureQueriesContext(connection) as queries:
            task()
        contexts = [q["sql"] for q in queries if "set_config('tap.org_id', '" in q["sql"]]
        assert len(contexts) == 2, task.name
