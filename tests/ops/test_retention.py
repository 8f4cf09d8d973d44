"""Per-organisation transcript retention: the setting (owners, on the settings page) and the
daily sweep that deletes older transcripts in batches, audited, one org at a time."""

from datetime import timedelta

import pytest
from django.utils import timezone

from campaigns.models import Participant
from conversations.models import Conversation, Message
from tap.orgs import services, tasks
from tap.orgs.models import AuditEvent, Organization
from tap.tenancy import org_context
from tests.campaigns import creator

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])


def transcripts(org, campaign, ages_in_days, *, prefix="p"):
    """One participant and conversation per age (days since its last activity)."""
    now = timezone.now()
    made = []
    for i, age in enumerate(ages_in_days):
        with org_context(org.id):
            person = Participant.objects.create(
                organization=org, campaign=campaign, email=f"{prefix}{i}@x.example"
            )
        when = now - timedelta(days=age)
        conversation = creator.conversation(org, campaign, person, ["Q", "A"], start=when)
        with org_context(org.id):
            Conversation.objects.filter(pk=conversation.pk).update(last_activity_at=when)
        made.append(conversation)
    return made


def set_retention(org, days):
    Organization.objects.using("service").filter(pk=org.pk).update(transcript_retention_days=days)


def counts(org):
    with org_context(org.id):
        return Conversation.objects.count(), Message.objects.count(), Participant.objects.count()


def test_the_sweep_deletes_only_old_transcripts_of_orgs_that_asked(org_a, org_b, alice, charlie):
    a = creator.campaign(org_a, alice, status="active")
    b = creator.campaign(org_b, charlie, status="active")
    old_a, _new_a = transcripts(org_a, a, [40, 5])
    transcripts(org_b, b, [400])  # org B keeps everything (no retention set)
    set_retention(org_a, 30)

    assert tasks.retention_sweep() == {"orgs": 1, "conversations": 1, "failed": 0}

    assert counts(org_a) == (1, 2, 2)  # participants stay; only transcripts go
    with org_context(org_a.id):
        assert not Conversation.objects.filter(pk=old_a.pk).exists()
    assert counts(org_b) == (1, 2, 1)
    event = AuditEvent.all_objects.using("service").get(action="transcripts.expired")
    assert event.organization_id == org_a.id
    assert event.actor_id is None
    assert event.data["conversations"] == 1
    assert event.data["messages"] == 2
    assert event.data["retention_days"] == 30
    # A second run finds nothing and writes nothing.
    assert tasks.retention_sweep()["conversations"] == 0
    assert AuditEvent.all_objects.using("service").filter(action="transcripts.expired").count() == 1


def test_large_runs_go_in_batches_each_audited(org_a, alice):
    campaign = creator.campaign(org_a, alice, status="completed")
    transcripts(org_a, campaign, [90] * 5)
    assert services.transcripts_expire(org_id=org_a.id, days=30, batch=2) == 5
    events = AuditEvent.all_objects.using("service").filter(action="transcripts.expired")
    assert sorted(e.data["conversations"] for e in events) == [1, 2, 2]
    assert counts(org_a)[0] == 0


def test_one_orgs_failure_does_not_stop_the_others(org_a, org_b, alice, charlie, monkeypatch):
    transcripts(org_a, creator.campaign(org_a, alice), [60], prefix="a")
    transcripts(org_b, creator.campaign(org_b, charlie), [60], prefix="b")
    set_retention(org_a, 30)
    set_retention(org_b, 30)
    real = services.transcripts_expire

    def broken_for_a(*, org_id, **kwargs):
        if org_id == org_a.id:
            raise RuntimeError("disk on fire")
        return real(org_id=org_id, **kwargs)

    monkeypatch.setattr(services, "transcripts_expire", broken_for_a)
    assert tasks.retention_sweep() == {"orgs": 1, "conversations": 1, "failed": 1}
    assert counts(org_a)[0] == 1
    assert counts(org_b)[0] == 0


# --- the setting -----------------------------------------------------------------------------


def url(org):
    return f"/o/{org.slug}/settings/retention/"


def retention_of(org):
    return Organization.objects.using("service").get(pk=org.pk).transcript_retention_days


def test_an_owner_sets_and_clears_the_retention(org_a, alice, client_for):
    client = client_for(alice)
    page = client.get(f"/o/{org_a.slug}/settings/").content.decode()
    assert "Transcript retention" in page
    response = client.post(url(org_a), {"transcript_retention_days": "90"}, follow=True)
    assert "deleted 90 days after their last message" in response.content.decode()
    assert retention_of(org_a) == 90
    client.post(url(org_a), {"transcript_retention_days": ""})
    assert retention_of(org_a) is None
    actions = list(
        AuditEvent.all_objects.using("service")
        .filter(action="org.retention_changed")
        .order_by("created_at")
        .values_list("data", flat=True)
    )
    assert actions == [{"old": None, "new": 90}, {"old": 90, "new": None}]


@pytest.mark.parametrize("bad", ["0", "-3", "99999", "soon"])
def test_bad_values_are_refused_with_a_message_and_nothing_changes(org_a, alice, client_for, bad):
    set_retention(org_a, 30)
    response = client_for(alice).post(url(org_a), {"transcript_retention_days": bad})
    assert response.status_code == 200
    assert "is-invalid" in response.content.decode()
    assert retention_of(org_a) == 30


def test_only_owners_may_set_it(org_a, dave, charlie, client_for):
    data = {"transcript_retention_days": "5"}
    assert client_for(dave).post(url(org_a), data).status_code == 403
    assert client_for(charlie).post(url(org_a), data).status_code == 404
    assert retention_of(org_a) is None


def test_get_is_405(org_a, alice, client_for):
    assert client_for(alice).get(url(org_a)).status_code == 405


def test_the_database_refuses_an_out_of_range_value(org_a):
    from django.db import IntegrityError, transaction

    with pytest.raises(IntegrityError), transaction.atomic(using="service"):
        set_retention(org_a, 0)
