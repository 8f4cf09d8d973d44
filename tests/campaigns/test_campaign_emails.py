"""Invitation emails: their content, exactly once under duplicate execution, nothing for people
who declined or finished, and a real SMTP round trip against a local server (aiosmtpd):
headers, both bodies, the link; a 5xx bounces the participant; a server that is down is
retried until it is back, and the message is delivered once."""

from __future__ import annotations

import socket
from email import message_from_bytes, policy

import pytest
from aiosmtpd.controller import Controller
from django.core import mail
from django.test import Client
from django.utils import timezone

from campaigns import services
from campaigns.models import Campaign, CampaignEmail, Participant
from campaigns.participant_input import parse_pasted
from campaigns.tasks import send_campaign_email
from tap import outbox
from tap.models import OutboxJob
from tap.orgs.models import AuditEvent, Organization
from tap.tenancy import org_context, org_scope
from tests.campaigns.test_lifecycle import make_campaign
from tests.campaigns.test_participant_links import (
    OPENING,
    active_campaign,
    decline_in,
    link_in,
    participant,
)

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])


def email_rows(org):
    with org_context(org.id):
        return list(CampaignEmail.objects.select_related("participant").order_by("created_at"))


def email_jobs():
    return OutboxJob.objects.using("service").filter(task="campaigns.send_campaign_email")


# --- content (Django's in-memory backend) --------------------------------------------------


def test_the_invitation_comes_from_the_org_with_the_question_and_both_links(alice, org_a):
    active_campaign(org_a, alice)
    (message,) = mail.outbox
    assert message.to == ["p@example.com"]
    assert message.from_email.startswith('"Org A" <')
    assert message.subject == "Org A would like your feedback: Tooling"
    html = message.alternatives[0][0]
    link, decline = link_in(message), decline_in(message)
    assert decline == link + "decline/"
    for body in (message.body, html):
        assert OPENING in body
        assert f"http://testserver{link}" in body
        assert f"http://testserver{decline}" in body
        assert "an AI asks a few follow-up questions" in body
        assert "anonymous" not in body
    assert message.extra_headers["List-Unsubscribe"] == f"<http://testserver{decline}>"
    assert message.extra_headers["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    (row,) = email_rows(org_a)
    assert (row.kind, row.sequence, row.status, row.attempts) == ("invitation", 1, "sent", 1)


def test_an_anonymous_campaign_says_so_and_names_are_not_escaped_in_text(alice, org_a):
    with org_context(org_a.id):
        Organization.objects.filter(pk=org_a.pk).update(name="R&D <Tools>")
    active_campaign(org_a, alice, anonymous=True)
    (message,) = mail.outbox
    assert message.subject == "R&D <Tools> would like your feedback: Tooling"
    assert "R&D <Tools>" in message.body
    html = message.alternatives[0][0]
    assert "R&amp;D &lt;Tools&gt;" in html
    for body in (message.body, html):
        assert "Responses are anonymous" in body


def test_invitations_go_out_once_however_often_the_job_runs(alice, org_a):
    active_campaign(org_a, alice, emails=("a@example.com", "b@example.com"))
    assert len(mail.outbox) == 2
    rows = email_rows(org_a)
    # The same body run again, a second job queued for the same rows, a redelivered job.
    with org_scope(org_a.id):
        for row in rows:
            send_campaign_email.outbox_body(email_id=str(row.pk))
    with org_context(org_a.id):
        outbox.enqueue_many(
            "campaigns.send_campaign_email",
            queue="email",
            org_id=org_a.id,
            kwargs_list=[{"email_id": str(row.pk)} for row in rows],
        )
    assert outbox.run_due_inline() == 2
    for job in email_jobs():
        assert outbox.execute(job.pk, send_campaign_email.outbox_body, atomic=False) == "skipped"
    assert len(mail.outbox) == 2
    assert sorted(m.to[0] for m in mail.outbox) == ["a@example.com", "b@example.com"]
    assert [r.status for r in email_rows(org_a)] == ["sent", "sent"]


def test_declined_and_completed_participants_get_nothing(alice, org_a):
    emails = ("a@example.com", "declined@example.com", "done@example.com")
    with org_context(org_a.id):
        campaign = services.campaign_create(
            actor=alice,
            org=org_a,
            name="Tooling",
            mission="Learn how engineers use AI tools day to day.",
            opening_question=OPENING,
        )
        services.participants_add(
            actor=alice, campaign=campaign, parsed=parse_pasted("\n".join(emails))
        )
        services.campaign_transition(actor=alice, campaign=campaign, to="active")
        # Between queueing and sending: one declines, one finishes (the jobs are still due).
        services.participant_decline(participant=Participant.objects.get(email=emails[1]))
        Participant.objects.filter(email=emails[2]).update(status="completed")
    outbox.run_due_inline()
    assert [m.to for m in mail.outbox] == [["a@example.com"]]
    status = {r.participant.email: (r.status, r.error) for r in email_rows(org_a)}
    assert status == {
        "a@example.com": ("sent", ""),
        "declined@example.com": ("failed", "declined"),
        "done@example.com": ("failed", "participant completed"),
    }


def test_nothing_goes_out_for_a_campaign_that_closed_meanwhile(alice, org_a):
    with org_context(org_a.id):
        campaign = services.campaign_create(
            actor=alice,
            org=org_a,
            name="Tooling",
            mission="Learn how engineers use AI tools day to day.",
            opening_question=OPENING,
        )
        services.participants_add(
            actor=alice, campaign=campaign, parsed=parse_pasted("a@example.com")
        )
        services.campaign_transition(actor=alice, campaign=campaign, to="active")
        Campaign.objects.filter(pk=campaign.pk).update(status="completed")
    outbox.run_due_inline()
    assert mail.outbox == []
    assert [(r.status, r.error) for r in email_rows(org_a)] == [("failed", "campaign completed")]


def test_a_task_under_org_scope_sees_its_organisations_rows(alice, org_a):
    """Regression: org_context inside org_scope (atomic=False tasks) must set the database
    context, or RLS hides every row and the task silently does nothing."""
    active_campaign(org_a, alice)
    with org_scope(org_a.id), org_context(org_a.id):
        assert CampaignEmail.objects.count() == 1


# --- a real SMTP server --------------------------------------------------------------------


class Sink:
    """An aiosmtpd handler: keeps what it is given; refuses (550) or defers (451) addresses."""

    def __init__(self):
        self.messages = []
        self.refuse: set[str] = set()
        self.defer: set[str] = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 no such user"
        if address in self.defer:
            return "451 try again later"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 Message accepted for delivery"


class SmtpServer:
    def __init__(self, port: int):
        self.port = port
        self.sink = Sink()
        self.controller = None

    @property
    def messages(self):
        return self.sink.messages

    def start(self) -> None:
        self.controller = Controller(self.sink, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp(settings):
    """Django's SMTP backend pointed at a local port; the server is started by the test
    (`smtp.start()`), so a test can also see what happens while nothing listens."""
    server = SmtpServer(free_port())
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST = "127.0.0.1"
    settings.EMAIL_PORT = server.port
    settings.EMAIL_HOST_USER = ""
    settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = False
    settings.EMAIL_USE_SSL = False
    settings.EMAIL_TIMEOUT = 5
    yield server
    server.stop()


def test_a_real_smtp_round_trip(smtp, alice, org_a):
    smtp.start()
    active_campaign(org_a, alice, anonymous=True)
    (message,) = smtp.messages
    assert message["From"].addresses[0].display_name == "Org A"
    assert message["To"] == "p@example.com"
    assert message["Subject"] == "Org A would like your feedback: Tooling"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    link = link_in(type("M", (), {"body": text}))
    unsubscribe = message["List-Unsubscribe"].strip()  # a long header is folded
    assert unsubscribe == f"<http://testserver{link}decline/>"
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    for body in (text, html):
        assert OPENING in body
        assert f"http://testserver{link}" in body
        assert "Responses are anonymous" in body

    # The link works, as the participant's browser would open it.
    browser = Client()
    response = browser.get(link)
    assert response.status_code == 302
    page = browser.get(response["Location"])
    assert page.status_code == 200
    assert OPENING in page.content.decode()

    # And the mail provider's one-click unsubscribe (RFC 8058) works on the header's URL.
    provider = Client(enforce_csrf_checks=True)
    response = provider.post(
        unsubscribe.strip("<>").removeprefix("http://testserver"),
        "List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 200
    assert participant(org_a).status == "declined"


def test_a_5xx_refusal_bounces_the_participant(smtp, alice, org_a):
    smtp.sink.refuse = {"nobody@example.com"}
    smtp.start()
    active_campaign(org_a, alice, emails=("nobody@example.com", "p@example.com"))
    assert [m["To"] for m in smtp.messages] == ["p@example.com"]
    nobody = participant(org_a, "nobody@example.com")
    assert nobody.status == "bounced"
    assert "550" in nobody.bounce_reason
    assert "no such user" in nobody.bounce_reason
    status = {r.participant.email: r.status for r in email_rows(org_a)}
    assert status == {"nobody@example.com": "bounced", "p@example.com": "sent"}
    # Permanent: the job is finished, not retried.
    assert set(email_jobs().values_list("status", flat=True)) == {"done"}
    with org_context(org_a.id):
        assert AuditEvent.objects.filter(
            action="participant.bounced", target_id=str(nobody.pk)
        ).exists()


def test_a_4xx_refusal_is_retried_not_bounced(smtp, alice, org_a):
    smtp.sink.defer = {"p@example.com"}
    smtp.start()
    active_campaign(org_a, alice)
    assert smtp.messages == []
    assert participant(org_a).status == "invited"
    (job,) = email_jobs()
    assert job.status == "pending"
    assert "451" in job.last_error


@pytest.mark.faults
def test_a_server_that_is_down_is_retried_and_delivers_once(smtp, alice, org_a):
    active_campaign(org_a, alice)  # nothing listens on the port yet
    (job,) = email_jobs()
    assert (job.status, job.attempts) == ("pending", 1)
    assert "SMTP failed, will retry" in job.last_error
    assert job.available_at > timezone.now()  # backed off
    (row,) = email_rows(org_a)
    assert (row.status, row.attempts) == ("pending", 1)
    assert "ConnectionRefusedError" in row.error

    smtp.start()
    assert outbox.run_due_inline() == 0  # not due yet: the back-off holds
    email_jobs().update(available_at=timezone.now())
    assert outbox.run_due_inline() == 1
    email_jobs().update(available_at=timezone.now())
    assert outbox.run_due_inline() == 0
    assert len(smtp.messages) == 1
    (job,) = email_jobs()
    assert (job.status, job.attempts) == ("done", 2)
    (row,) = email_rows(org_a)
    assert (row.status, row.attempts, row.error) == ("sent", 2, "")


def test_after_the_last_attempt_the_email_says_failed(smtp, alice, org_a, settings):
    settings.TAP_OUTBOX_MAX_ATTEMPTS_BY_QUEUE = {"email": 2}
    active_campaign(org_a, alice)  # attempt 1: nothing listens
    email_jobs().update(available_at=timezone.now())
    outbox.run_due_inline()  # attempt 2, the last
    (job,) = email_jobs()
    assert (job.status, job.attempts) == ("dead", 2)
    (row,) = email_rows(org_a)
    assert row.status == "failed"
    assert "ConnectionRefusedError" in row.error


def test_emails_due_while_paused_are_held_and_go_out_once_on_resume(alice, org_a):
    campaign = make_campaign(org_a, alice, participants=("a@example.com", "b@example.com"))
    with org_context(org_a.id):
        services.campaign_transition(actor=alice, campaign=campaign, to="active")
        # Paused before the queued invitations ran.
        services.campaign_transition(actor=alice, campaign=campaign, to="paused")
    outbox.run_due_inline()
    assert mail.outbox == []
    assert {(r.status, r.error) for r in email_rows(org_a)} == {
        ("pending", "held while the campaign is paused")
    }
    with org_context(org_a.id):
        services.campaign_transition(actor=alice, campaign=campaign, to="active")
    outbox.run_due_inline()
    assert sorted(m.to[0] for m in mail.outbox) == ["a@example.com", "b@example.com"]
    assert {r.status for r in email_rows(org_a)} == {"sent"}
