"""The creator's campaign pages in a real browser: create a campaign, paste a mixed list of
participants and read the report, run the lifecycle, read the participant table and a
transcript. No CSP violations or console errors on any of them.

    TAP_SCREENSHOTS=1 make test PYTEST_ARGS="tests/browser/test_campaign_creator.py -q"
"""

from __future__ import annotations

import re

import pytest
from django.core import mail

from campaigns.models import Campaign
from tap import outbox
from tap.tenancy import org_context
from tests.campaigns import creator
from tests.campaigns.test_participant_links import link_in
from tests.conftest import PASSWORD

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips (or, on CI, fails) and says why
    expect = None

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"]),
]

MIXED = ("pending", "invited", "opened", "in_progress", "completed", "declined", "bounced")
PASTE = """ann@acme.example, Bob Baker <bob@acme.example>
not an address
"Cee Dee" <cee@acme.example>; ANN@acme.example
dee@acme.example"""


def log_in(page, email):
    page.goto("/accounts/login/")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()


def test_a_creator_runs_a_campaign(page, org_a, alice, problems, screenshot):
    log_in(page, alice.email)
    page.goto(f"/o/{org_a.slug}/")
    page.get_by_role("navigation", name="Organisation").get_by_role(
        "link", name="Campaigns"
    ).click()
    expect(page.get_by_role("heading", name="No campaigns yet")).to_be_visible()

    # --- create ------------------------------------------------------------------------------
    page.get_by_role("link", name="Create the first campaign").click()
    page.get_by_label("Name", exact=True).fill("Developer experience with AI tools")
    page.get_by_label("Mission", exact=True).fill(
        "Understand how our engineers use AI coding tools, where they help and where they "
        "get in the way, so we can decide what to buy and what to teach."
    )
    page.get_by_label("Opening question").fill("How did AI tools change your work this month?")
    page.get_by_label("Reminders").fill("3, 7, 99")
    screenshot("campaign-create")
    page.get_by_role("button", name="Create campaign").click()
    expect(page.get_by_text("Reminder days are whole days after the invitation")).to_be_visible()
    page.get_by_label("Reminders").fill("2, 5")
    page.get_by_role("button", name="Create campaign").click()
    expect(page).to_have_url(re.compile(r"/participants/add/$"))

    # --- add participants --------------------------------------------------------------------
    page.get_by_label("Paste addresses").fill(PASTE)
    page.get_by_role("button", name="Add participants").click()
    expect(page.get_by_text("Added 4")).to_be_visible()
    expect(page.get_by_text("Duplicate in this list")).to_be_visible()
    screenshot("campaign-add-report")
    problems.assert_none("while creating and adding")

    # --- lifecycle ---------------------------------------------------------------------------
    page.get_by_role("link", name="Back to the campaign").click()
    page.get_by_role("button", name="Activate").click()
    expect(page.get_by_role("alert")).to_contain_text("Campaign activated")

    # --- the invitation, read from the mail sink, opens the participant's page ---------------
    outbox.run_due_inline()
    (invitation,) = [m for m in mail.outbox if m.to == ["ann@acme.example"]]
    assert "Developer experience with AI tools" in invitation.body
    creator_url = page.url
    page.goto(link_in(invitation))
    assert page.url.endswith("/c/")  # the token left the address bar
    expect(page.get_by_text("How did AI tools change your work this month?")).to_be_visible()
    page.goto(creator_url)
    page.get_by_role("button", name="Pause").click()
    expect(page.get_by_role("alert")).to_contain_text("Campaign paused")
    page.get_by_role("button", name="Resume").click()
    expect(page.get_by_role("alert")).to_contain_text("Campaign resumed")

    # --- a fuller table: twenty people in every status, a few conversations -------------------
    with org_context(org_a.id):
        campaign = Campaign.objects.get()
    people = creator.participants_in_bulk(org_a, campaign, 20, statuses=MIXED)
    for person in people:
        if person.status in ("in_progress", "completed"):
            creator.conversation(
                org_a,
                campaign,
                person,
                [
                    "How did AI tools change your work this month?",
                    "I write tests first now and let the assistant fill in the boring cases.",
                    "What do you check before you accept what it wrote?",
                    "That the test fails for the right reason. Half the time it does not.",
                ],
            )
    page.reload()
    expect(page.get_by_text("Bounced: 550 mailbox unavailable").first).to_be_visible()
    screenshot("campaign-detail")
    page.set_viewport_size({"width": 390, "height": 844})
    screenshot("campaign-detail-phone")
    page.set_viewport_size({"width": 1280, "height": 800})
    page.get_by_role("link", name="Transcript").first.click()
    expect(page.get_by_text("Half the time it does not.")).to_be_visible()
    screenshot("campaign-transcript")

    page.goto(f"/o/{org_a.slug}/campaigns/")
    creator.campaign(org_a, alice, name="Onboarding, first week", status="completed")
    creator.campaign(org_a, alice, name="Old survey", status="archived")
    page.reload()
    expect(page.get_by_role("link", name="Developer experience with AI tools")).to_be_visible()
    expect(page.get_by_role("link", name="Old survey")).to_have_count(0)
    screenshot("campaign-list")
    page.goto(f"/o/{org_a.slug}/")
    screenshot("campaign-dashboard")
    problems.assert_none("on the campaign pages")
