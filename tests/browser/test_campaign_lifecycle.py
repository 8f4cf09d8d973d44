"""Completing a campaign in a real browser: the button asks first, says what will happen to
the conversations still open, and only the confirmation moves the campaign.

    TAP_SCREENSHOTS=1 make test PYTEST_ARGS="tests/browser/test_campaign_lifecycle.py -q"
"""

from __future__ import annotations

import pytest

from campaigns.models import Campaign
from tap.tenancy import org_context
from tests.browser.test_campaign_creator import log_in
from tests.campaigns import creator

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips (or, on CI, fails) and says why
    expect = None

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"]),
]


def status(org, campaign) -> str:
    with org_context(org.id):
        return Campaign.objects.get(pk=campaign.pk).status


def test_completing_a_campaign_asks_first(page, org_a, alice, screenshot):
    campaign = creator.campaign(org_a, alice, status="active")
    (person,) = creator.participants_in_bulk(org_a, campaign, 1)
    creator.conversation(org_a, campaign, person, [creator.QUESTION, "Half an answer"])
    log_in(page, alice.email)
    page.goto(f"/o/{org_a.slug}/campaigns/{campaign.pk}/")
    page.get_by_role("button", name="Complete").click()
    expect(page.get_by_text("1 conversation still open is closed as it stands")).to_be_visible()
    screenshot("campaign-complete-confirm")
    page.get_by_role("link", name="Cancel").click()
    expect(page.get_by_role("button", name="Pause")).to_be_visible()
    assert status(org_a, campaign) == "active"
    page.get_by_role("button", name="Complete").click()
    page.get_by_role("button", name="Complete the campaign").click()
    expect(page.get_by_text("Campaign completed.")).to_be_visible()
    assert status(org_a, campaign) == "completed"
