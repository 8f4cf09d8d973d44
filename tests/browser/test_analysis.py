"""The analysis page in a real browser: an admin asks for the analysis, watches the progress
bar until the page shows the result by itself, opens a theme's conversations and follows a
quote to its line in the transcript; the page prints as a clean report. No console errors
and no CSP violations.

    TAP_SCREENSHOTS=1 make test PYTEST_ARGS="tests/browser/test_analysis.py -q"
"""

from __future__ import annotations

import pytest

from tap import outbox
from tests.analysis.helpers import planted_campaign
from tests.browser.test_campaign_creator import log_in

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips (or, on CI, fails) and says why
    expect = None

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"]),
]


def test_an_admin_analyses_a_campaign_and_follows_a_quote(page, org_a, alice, screenshot):
    campaign, _truth = planted_campaign(org_a, alice)
    outbox.run_due_inline()  # the campaign's own jobs
    log_in(page, alice.email)
    page.goto(f"/o/{org_a.slug}/campaigns/{campaign.pk}/")
    page.get_by_role("link", name="Analysis", exact=True).click()
    expect(page.get_by_text("No analysis yet")).to_be_visible()
    screenshot("analysis-empty")

    page.get_by_role("button", name="Analyse now").click()
    expect(page.get_by_role("status").filter(has_text="Analysis queued")).to_be_visible()
    expect(page.locator("progress.analysis-progress")).to_be_visible()
    screenshot("analysis-progress")
    outbox.run_due_inline()  # the worker
    # htmx polls every 2 s; when the run is done the page reloads itself.
    expect(page.get_by_role("heading", name="Executive summary")).to_be_visible(timeout=8000)
    expect(page.locator("progress.analysis-progress")).to_have_count(0)
    expect(page.get_by_text("offline analysis").first).to_be_visible()
    expect(page.locator("svg.analysis-chart rect.bar").first).to_be_attached()
    screenshot("analysis-page")

    themes = page.get_by_role("table").first
    first_theme = themes.get_by_role("link").first
    label = first_theme.inner_text()
    first_theme.click()
    listing = page.locator("#theme-conversations")
    expect(listing.get_by_role("heading")).to_contain_text(label)
    expect(listing.get_by_role("row")).to_have_count(1 + 8)
    screenshot("analysis-theme")

    page.get_by_role("link", name="Completed only").click()
    expect(page.get_by_text("24 conversations in view")).to_be_visible()

    quote = page.locator(".analysis-quote").first
    text = quote.locator("p").inner_text().strip("“”")
    quote.get_by_role("link").click()
    fragment = page.url.split("#", 1)[1]
    line = page.locator(f"#{fragment}")
    expect(line).to_be_visible()
    expect(line).to_contain_text(text[:30])

    page.go_back()
    page.emulate_media(media="print")
    expect(page.get_by_role("button", name="Refresh")).to_be_hidden()
    screenshot("analysis-print")


def test_a_member_reads_without_a_refresh_button(page, org_a, alice, bob):
    campaign, _truth = planted_campaign(org_a, alice, per_theme=2)
    outbox.run_due_inline()
    log_in(page, bob.email)
    page.goto(f"/o/{org_a.slug}/campaigns/{campaign.pk}/analysis/")
    expect(page.get_by_text("No analysis yet")).to_be_visible()
    expect(page.locator("main").get_by_role("button")).to_have_count(0)
