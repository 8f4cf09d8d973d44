"""Participant pages in a real browser: the emailed link lands on the token-free page (no CSP
violations, no console errors), the paused page, and the decline confirmation."""

from __future__ import annotations

import pytest
from django.core import mail

from campaigns import services
from tap.tenancy import org_context
from tests.campaigns.test_participant_links import OPENING, active_campaign, decline_in, link_in

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips (or, on CI, fails) and says why
    expect = None

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"]),
]

PHONE = {"width": 390, "height": 844}


def test_a_participant_opens_the_link_sees_the_pages_and_declines(
    page, problems, screenshot, alice, org_a
):
    campaign = active_campaign(org_a, alice, anonymous=True)
    message = mail.outbox[0]

    page.goto(link_in(message))
    assert page.url.endswith("/c/")  # the token left the address bar
    expect(page.get_by_role("heading", name="Tooling")).to_be_visible()
    expect(page.get_by_text(OPENING)).to_be_visible()
    expect(page.get_by_text("Responses are anonymous")).to_be_visible()
    problems.assert_none("on the conversation page")
    screenshot("participant-conversation")
    page.set_viewport_size(PHONE)
    screenshot("participant-conversation-phone")

    with org_context(org_a.id):
        services.campaign_transition(actor=alice, campaign=campaign, to="paused")
    page.reload()
    expect(page.get_by_role("heading", name="Tooling is paused")).to_be_visible()
    screenshot("participant-paused-phone")
    page.set_viewport_size({"width": 1280, "height": 800})
    screenshot("participant-paused")

    page.goto(decline_in(message))
    expect(page.get_by_role("heading", name="Stop emails about Tooling?")).to_be_visible()
    screenshot("participant-decline")
    page.get_by_role("button", name="Yes, no more emails").click()
    expect(page.get_by_role("heading", name="Done: no more emails")).to_be_visible()
    screenshot("participant-declined")
    problems.assert_none("on the decline pages")
