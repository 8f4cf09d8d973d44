"""Every metrics page with the demo data, in a real browser, as an admin and as a member: the
charts draw, tables open, and nothing breaks the CSP or logs an error.

    TAP_SCREENSHOTS=1 make test PYTEST_ARGS="tests/browser/test_metrics_pages.py -q"
"""

from __future__ import annotations

import pytest

from metrics import demo
from tests.browser.test_campaign_creator import log_in

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips (or, on CI, fails) and says why
    expect = None

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"]),
]

PAGES = [
    ("overview", ""),
    ("cohorts-team", "cohorts/?by=team"),
    ("cohorts-tier", "cohorts/?by=tier&tool=copilot"),
    ("seats", "seats/"),
    ("freshness", "freshness/"),
    ("developers", "developers/"),
    ("identities", "identities/"),
    ("api-keys", "api-keys/"),
]


def test_admin_and_member_pages(page, org_a, alice, bob, screenshot):
    demo.seed(org_a)
    log_in(page, alice.email)
    base = f"/o/{org_a.slug}/metrics/"
    for name, path in PAGES:
        page.goto(base + path)
        expect(page.get_by_role("navigation", name="Metrics")).to_be_visible()
        screenshot(f"metrics-{name}")
    page.goto(base + "developers/")
    page.get_by_role("link", name="Ada Lovelace").click()
    expect(page.get_by_role("img", name="Suggestions per day")).to_be_visible()
    expect(page.get_by_text("ada@example.com").first).to_be_visible()
    # Each tool broken down from its exports: the demo's records carry breakdowns.
    expect(page.get_by_role("img", name="GitHub Copilot by language")).to_be_visible()
    cost = page.get_by_role("region", name="Claude Code estimated cost by model (USD)")
    cost.get_by_text("Table").click()
    expect(cost.get_by_role("columnheader", name="Estimated cost (USD)")).to_be_visible()
    screenshot("metrics-developer")

    page.context.clear_cookies()
    log_in(page, bob.email)
    page.goto(base + "seats/")
    expect(page.get_by_role("term").filter(has_text="Never used")).to_be_visible()
    expect(page.get_by_text("unused-seat")).to_have_count(0)  # names are for admins
    nav = page.get_by_role("navigation", name="Metrics")
    expect(nav.get_by_role("link", name="Developers")).to_have_count(0)
    screenshot("metrics-seats-member")
