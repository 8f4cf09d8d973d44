"""Erasing a participant (campaigns/privacy.py): messages, conversation and identity gone in
one transaction, earlier audit rows scrubbed, the erasure audited without personal data."""

import pytest
from django.core import mail
from django.core.exceptions import ValidationError

from campaigns import privacy, services
from campaigns.models import CampaignEmail, Participant, ParticipantLink
from conversations.analysis import inputs
from conversations.models import Conversation, ConversationAnalysis, Message
from tap import outbox
from tap.models import OutboxJob
from tap.orgs.models import AuditEvent
from tap.tenancy import org_context
from tests.campaigns import creator

# The erasure runs on the service connection: the rows it deletes must be committed.
pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])

EMAIL = "Erin.Erased@x.example"


@pytest.fixture
def setup(org_a, alice):
    campaign = creator.campaign(org_a, alice, status="active")
    with org_context(org_a.id):
        erin = Participant.objects.create(
            organization=org_a, campaign=campaign, email=EMAIL, name="Erin Erased"
        )
        keep = Participant.objects.create(
            organization=org_a, campaign=campaign, email="kept@x.example"
        )
        services.link_issue(participant=erin)
        services.participant_resend(actor=alice, participant=erin)  # email row + audit row
        services.links_revoke(actor=alice, participant=erin, reissue=False)  # audit names her
    conversation = creator.conversation(org_a, campaign, erin, ["Q", "I am Erin, my secret"])
    kept = creator.conversation(org_a, campaign, keep, ["Q", "Kept answer"])
    with org_context(org_a.id):
        ConversationAnalysis.objects.create(
            organization=org_a, conversation=conversation, engine="local", input_hash="x"
        )
    return campaign, erin, keep, conversation, kept


def audit_texts(org):
    return [
        str(e.data) for e in AuditEvent.all_objects.using("service").filter(organization_id=org.id)
    ]


def test_erase_deletes_everything_of_theirs_and_nothing_else(org_a, alice, setup):
    campaign, erin, keep, _conversation, kept = setup
    assert any(EMAIL in text for text in audit_texts(org_a))  # the scrub has work to do

    erased = privacy.participant_erase(actor=alice, participant=erin)

    assert erased == privacy.Erasure(
        conversations=1, messages=2, links=1, emails=1, audit_rows_scrubbed=2
    )
    with org_context(org_a.id):
        assert list(Participant.objects.values_list("pk", flat=True)) == [keep.pk]
        assert list(Conversation.objects.values_list("pk", flat=True)) == [kept.pk]
        assert list(Message.objects.values_list("body", flat=True).order_by("created_at")) == [
            "Q",
            "Kept answer",
        ]
        assert not ParticipantLink.objects.exists()
        assert not CampaignEmail.objects.filter(participant_id=erin.pk).exists()
        assert not ConversationAnalysis.objects.exists()
    texts = audit_texts(org_a)
    assert not any(EMAIL.lower() in text.lower() or "Erin" in text for text in texts)
    event = AuditEvent.all_objects.using("service").get(
        organization_id=org_a.id, action="participant.erased"
    )
    assert event.actor_id == alice.pk
    assert event.target_id == str(campaign.pk)
    assert event.data == {
        "participant_id": str(erin.pk),
        "conversations": 1,
        "messages": 2,
        "links": 1,
        "emails": 1,
        "audit_rows_scrubbed": 2,
    }
    # Member events keep their addresses (alice created the organisation).
    assert AuditEvent.all_objects.using("service").filter(action="org.created").exists()


def test_erasing_twice_says_so(org_a, alice, setup):
    _campaign, erin, *_ = setup
    privacy.participant_erase(actor=alice, participant=erin)
    with pytest.raises(ValidationError, match="already removed"):
        privacy.participant_erase(actor=alice, participant=erin)


def test_the_analysis_inputs_change_so_a_stored_analysis_reads_stale(org_a, alice, setup):
    campaign, erin, *_ = setup
    with org_context(org_a.id):
        Conversation.objects.update(status="completed")
        options = inputs.analysis_options(campaign, include_in_progress=True)
        before = inputs.snapshot(campaign=campaign, options=options, engine_key="local")
    privacy.participant_erase(actor=alice, participant=erin)
    with org_context(org_a.id):
        after = inputs.snapshot(campaign=campaign, options=options, engine_key="local")
    assert len(before.conversations) == 2
    assert len(after.conversations) == 1
    assert after.hash != before.hash


def test_a_reply_queued_before_the_erasure_writes_nothing(org_a, alice, setup):
    _campaign, erin, _keep, conversation, _kept = setup
    with org_context(org_a.id):
        Conversation.objects.filter(pk=conversation.pk).update(
            participant_turns=1, awaiting_reply=True
        )
        outbox.enqueue(
            "conversations.reply",
            queue="ai",
            org_id=org_a.id,
            conversation_id=str(conversation.pk),
            turn=1,
        )
    privacy.participant_erase(actor=alice, participant=erin)
    outbox.run_due_inline()  # her reply, and the invitation email queued by the resend
    statuses = set(OutboxJob.objects.using("service").values_list("status", flat=True))
    assert statuses == {"done"}  # found nothing to do; nothing failed or waits for a retry
    assert not mail.outbox
    with org_context(org_a.id):
        assert not Message.objects.filter(conversation_id=conversation.pk).exists()


# --- the page ----------------------------------------------------------------------------


def test_the_campaign_page_links_to_the_erase_page(org_a, alice, client_for, setup):
    campaign, erin, *_ = setup
    page = client_for(alice).get(creator.url("detail", org_a, campaign.pk)).content.decode()
    assert creator.url("participant_erase", org_a, campaign.pk, erin.pk) in page


def test_erase_asks_for_the_address_then_erases(org_a, dave, client_for, setup):
    campaign, erin, *_ = setup
    client = client_for(dave)  # an admin may erase
    url = creator.url("participant_erase", org_a, campaign.pk, erin.pk)
    page = client.get(url)
    assert page.status_code == 200
    assert "This cannot be undone" in page.content.decode()

    wrong = client.post(url, {"confirm": "someone@else.example"})
    assert wrong.status_code == 200
    assert "nothing was erased" in wrong.content.decode()
    with org_context(org_a.id):
        assert Participant.objects.filter(pk=erin.pk).exists()
        assert Message.objects.count() == 4

    done = client.post(url, {"confirm": EMAIL.lower()}, follow=True)
    assert done.redirect_chain[-1][0] == creator.url("detail", org_a, campaign.pk)
    assert "A participant was erased: 2 messages" in " ".join(creator.messages_of(done))
    assert EMAIL.lower() not in done.content.decode().lower()
    with org_context(org_a.id):
        assert not Participant.objects.filter(pk=erin.pk).exists()


def test_a_member_may_not_erase(org_a, bob, client_for, setup):
    campaign, erin, *_ = setup
    client = client_for(bob)
    url = creator.url("participant_erase", org_a, campaign.pk, erin.pk)
    assert client.get(url).status_code == 403
    assert client.post(url, {"confirm": EMAIL}).status_code == 403
    with org_context(org_a.id):
        assert Participant.objects.filter(pk=erin.pk).exists()


def test_another_orgs_admin_gets_404_and_nothing_changes(org_a, org_b, charlie, client_for, setup):
    campaign, erin, *_ = setup
    url = creator.url("participant_erase", org_a, campaign.pk, erin.pk)
    assert client_for(charlie).post(url, {"confirm": EMAIL}).status_code == 404
    with org_context(org_a.id):
        assert Participant.objects.filter(pk=erin.pk).exists()


def test_a_participant_of_another_campaign_is_404(org_a, alice, client_for, setup):
    _campaign, erin, *_ = setup
    other = creator.campaign(org_a, alice, name="Other", status="active")
    url = creator.url("participant_erase", org_a, other.pk, erin.pk)
    assert client_for(alice).post(url, {"confirm": EMAIL}).status_code == 404


def test_wrong_method_is_405(org_a, alice, client_for, setup):
    campaign, erin, *_ = setup
    url = creator.url("participant_erase", org_a, campaign.pk, erin.pk)
    assert client_for(alice).put(url).status_code == 405
