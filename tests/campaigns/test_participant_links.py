"""Participant links /c/<token>/: token → session → token-free page, re-checked on every
request; revoked and unknown links are the ordinary 404; rate limits; paused and closed pages;
the one-click decline."""

from __future__ import annotations

import logging
import re
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from campaigns import links, services
from campaigns.models import Campaign, CampaignEmail, Participant, ParticipantLink
from campaigns.participant_input import parse_pasted
from campaigns.settings_schema import CampaignSettings
from campaigns.tasks import sweep
from tap import outbox
from tap.tenancy import org_context

# The outbox is read through the service connection: the data must really be committed.
pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])

LINK = re.compile(r"http://testserver(/c/[A-Za-z0-9_-]+/)")
DECLINE = re.compile(r"http://testserver(/c/[A-Za-z0-9_-]+/decline/)")
OPENING = "How did you use AI tools this week?"


def active_campaign(org, actor, emails=("p@example.com",), **options) -> Campaign:
    """An active campaign whose invitations have gone out (to the locmem outbox)."""
    with org_context(org.id):
        campaign = services.campaign_create(
            actor=actor,
            org=org,
            name="Tooling",
            mission="Learn how engineers use AI tools day to day.",
            opening_question=OPENING,
            settings=CampaignSettings(**options),
        )
        services.participants_add(
            actor=actor, campaign=campaign, parsed=parse_pasted("\n".join(emails))
        )
        services.campaign_transition(actor=actor, campaign=campaign, to="active")
    outbox.run_due_inline()
    return campaign


def link_in(message) -> str:
    return LINK.search(message.body).group(1)


def decline_in(message) -> str:
    return DECLINE.search(message.body).group(1)


def participant(org, email="p@example.com") -> Participant:
    with org_context(org.id):
        return Participant.objects.get(email=email)


def set_status(campaign, status) -> None:
    with org_context(campaign.organization_id):
        Campaign.objects.filter(pk=campaign.pk).update(status=status)


def assert_private(response) -> None:
    assert response["Referrer-Policy"] == "no-referrer"
    assert "no-store" in response["Cache-Control"]


def normalised(response) -> str:
    """A page without what differs per request (the masked CSRF token)."""
    return re.sub(r'"X-CSRFToken": "[^"]*"', "", response.content.decode())


# --- the link ------------------------------------------------------------------------------


def test_the_first_hit_trades_the_token_for_a_session_and_leaves_the_url(client, alice, org_a):
    active_campaign(org_a, alice)
    link = link_in(mail.outbox[0])
    token = link.split("/")[2]

    response = client.get(link)
    assert response.status_code == 302
    assert response["Location"] == "/c/"
    assert_private(response)
    assert client.session[links.SESSION_KEY] == services.hash_token(token)
    assert token not in str(dict(client.session))

    page = client.get("/c/")
    assert page.status_code == 200
    assert_private(page)
    html = page.content.decode()
    assert token not in html
    assert "Tooling" in html
    assert "Your answers go to <strong>Org A</strong>; an AI asks follow-up questions." in html
    assert OPENING in html
    assert "Your answer" in html  # the chat (conversations.views)
    assert "Responses are anonymous" not in html

    p = participant(org_a)
    assert p.status == "opened"
    assert p.opened_at is not None
    with org_context(org_a.id):
        assert ParticipantLink.objects.get().last_used_at is not None


def test_an_anonymous_campaign_says_so(client, alice, org_a):
    active_campaign(org_a, alice, anonymous=True)
    client.get(link_in(mail.outbox[0]))
    assert "Responses are anonymous" in client.get("/c/").content.decode()


def test_every_request_checks_the_link_again(client, alice, org_a):
    active_campaign(org_a, alice)
    link = link_in(mail.outbox[0])
    client.get(link)
    assert client.get("/c/").status_code == 200
    with org_context(org_a.id):
        services.links_revoke(actor=alice, participant=participant(org_a), reissue=False)
    # The session still holds the hash, but the link behind it is revoked.
    response = client.get("/c/")
    assert response.status_code == 404
    assert_private(response)
    assert client.get(link).status_code == 404


def test_unknown_revoked_and_malformed_links_are_the_ordinary_404(client, alice, org_a):
    active_campaign(org_a, alice)
    revoked = link_in(mail.outbox[0])
    with org_context(org_a.id):
        services.links_revoke(actor=alice, participant=participant(org_a), reissue=False)
    ordinary = client.get("/no-such-page/")
    assert ordinary.status_code == 404
    for url in (revoked, "/c/" + "A" * 43 + "/", "/c/short/", "/c/%00%ff/", revoked + "decline/"):
        response = client.get(url)
        assert response.status_code == 404, url
        assert normalised(response) == normalised(ordinary), url
    assert client.get("/c/").status_code == 404  # no session at all


def test_a_reminder_carries_a_fresh_token_and_the_old_one_still_works(client, alice, org_a):
    active_campaign(org_a, alice)
    first = link_in(mail.outbox[0])
    with time_machine.travel(timezone.now() + timedelta(days=3, hours=1)):
        assert sweep()["reminders"] == 1
        outbox.run_due_inline()
    second = link_in(mail.outbox[1])
    assert "reminder" in mail.outbox[1].subject.lower()
    assert first != second
    for link in (first, second):
        client.cookies.clear()
        assert client.get(link)["Location"] == "/c/"
        assert client.get("/c/").status_code == 200
    with org_context(org_a.id):
        assert ParticipantLink.objects.count() == 2


def test_unknown_token_lookups_are_rate_limited_per_client(client, alice, org_a, settings):
    settings.TAP_PARTICIPANT_LINK_RATE = "3/300"
    active_campaign(org_a, alice)
    good = link_in(mail.outbox[0])
    for _ in range(3):
        assert client.get("/c/" + "B" * 43 + "/").status_code == 404
    refused = client.get("/c/" + "C" * 43 + "/")
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0
    assert_private(refused)
    # Over the limit nothing is looked up, a real link included: guessing cannot go on.
    assert client.get(good).status_code == 429
    assert client.get(good + "decline/").status_code == 429
    # Another client is unaffected.
    assert client.get(good, REMOTE_ADDR="10.1.2.3").status_code == 302


def test_tokens_never_reach_the_log(client, alice, org_a):
    active_campaign(org_a, alice)
    link = link_in(mail.outbox[0])
    token = link.split("/")[2]
    with org_context(org_a.id):
        services.links_revoke(actor=alice, participant=participant(org_a), reissue=False)
    records: list[logging.LogRecord] = []
    keep = logging.Handler()
    keep.emit = records.append
    logger = logging.getLogger("django.request")
    logger.addHandler(keep)
    try:
        assert client.get(link).status_code == 404  # Django logs "Not Found: <path>"
    finally:
        logger.removeHandler(keep)
    assert records
    # Through the configured handler: its filters, its JSON formatter.
    console = next(h for h in logging.getLogger().handlers if h.get_name() == "console")
    for record in records:
        assert console.filter(record)
        line = console.format(record)
        assert token not in line
        assert "/c/[redacted]/" in line


# --- paused, closed, draft -----------------------------------------------------------------


def test_a_paused_campaign_shows_the_paused_page(client, alice, org_a):
    campaign = active_campaign(org_a, alice)
    client.get(link_in(mail.outbox[0]))
    with org_context(org_a.id):
        services.campaign_transition(actor=alice, campaign=campaign, to="paused")
    page = client.get("/c/")
    assert page.status_code == 200
    assert_private(page)
    assert "Tooling is paused" in page.content.decode()
    assert OPENING not in page.content.decode()


@pytest.mark.parametrize("status", ["completed", "archived"])
def test_a_completed_or_archived_campaign_shows_the_closed_page(client, alice, org_a, status):
    campaign = active_campaign(org_a, alice)
    client.get(link_in(mail.outbox[0]))
    set_status(campaign, status)
    page = client.get("/c/")
    assert page.status_code == 200
    assert "Tooling has closed" in page.content.decode()


def test_a_draft_campaign_is_never_shown(client, alice, org_a):
    with org_context(org_a.id):
        campaign = services.campaign_create(
            actor=alice,
            org=org_a,
            name="Draft",
            mission="Learn how engineers use AI tools day to day.",
            opening_question=OPENING,
        )
        services.participants_add(
            actor=alice, campaign=campaign, parsed=parse_pasted("p@example.com")
        )
        token = services.link_issue(participant=participant(org_a))
    assert client.get(f"/c/{token}/").status_code == 302
    assert client.get("/c/").status_code == 404


def test_participant_pages_accept_only_reads(client, alice, org_a):
    active_campaign(org_a, alice)
    link = link_in(mail.outbox[0])
    assert client.post(link).status_code == 405
    client.get(link)
    assert client.post("/c/").status_code == 405


# --- decline -------------------------------------------------------------------------------


def test_decline_asks_first_then_declines_and_no_reminder_follows(client, alice, org_a):
    active_campaign(org_a, alice)
    url = decline_in(mail.outbox[0])
    page = client.get(url)
    assert page.status_code == 200
    assert_private(page)
    assert 'method="post"' in page.content.decode()
    assert participant(org_a).status == "invited"  # a GET (or a link scanner) changes nothing

    # No CSRF token: mail providers POST here for one-click unsubscribe (RFC 8058).
    csrf_client = client.__class__(enforce_csrf_checks=True)
    done = csrf_client.post(url, {"List-Unsubscribe": "One-Click"})
    assert done.status_code == 200
    assert_private(done)
    assert "no more emails" in done.content.decode()
    assert participant(org_a).status == "declined"
    assert "no more emails" in client.get(url).content.decode()  # already declined

    with time_machine.travel(timezone.now() + timedelta(days=8)):
        assert sweep()["reminders"] == 0
        outbox.run_due_inline()
    assert len(mail.outbox) == 1
    with org_context(org_a.id):
        assert not CampaignEmail.objects.filter(kind="reminder").exists()


def test_the_declined_participant_can_still_open_the_conversation(client, alice, org_a):
    active_campaign(org_a, alice)
    client.post(decline_in(mail.outbox[0]))
    client.get(link_in(mail.outbox[0]))
    page = client.get("/c/").content.decode()
    assert "You asked for no more emails" in page
    assert participant(org_a).status == "declined"


def test_decline_with_an_unknown_or_revoked_link_is_404(client, alice, org_a):
    active_campaign(org_a, alice)
    url = decline_in(mail.outbox[0])
    with org_context(org_a.id):
        services.links_revoke(actor=alice, participant=participant(org_a), reissue=False)
    assert client.post(url).status_code == 404
    assert client.post("/c/" + "D" * 43 + "/decline/").status_code == 404
    assert participant(org_a).status == "invited"


def test_links_of_another_org_resolve_only_to_their_own_participant(
    client, alice, charlie, org_a, org_b
):
    active_campaign(org_a, alice)
    active_campaign(org_b, charlie, emails=("p@example.com",))
    link_a, link_b = link_in(mail.outbox[0]), link_in(mail.outbox[1])
    client.get(link_b)
    assert "Org B" in client.get("/c/").content.decode()
    client.get(link_a)
    page = client.get("/c/").content.decode()
    assert "Org A" in page
    assert "Org B" not in page
    assert participant(org_a).status == "opened"
    assert participant(org_b).status == "opened"
