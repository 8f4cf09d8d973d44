"""Campaigns and developer metrics in a real browser: an admin draws participants from a
developer team, sees who is linked, and the analysis breaks down by AI-tool usage. No console
errors and no CSP violations.

    TAP_SCREENSHOTS=1 make test PYTEST_ARGS="tests/browser/test_developer_campaigns.py -q"
"""

from __future__ import annotations

import pytest

from conversations.analysis import service
from metrics.models import DeveloperIdentity, DeveloperTeam
from tap import outbox
from tap.tenancy import org_context
from tests.analysis.helpers import planted_campaign
from tests.analysis.test_tiers import link_with_usage
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


def test_an_admin_invites_a_team_and_reads_the_analysis_by_usage(
    page, org_a, alice, problems, screenshot
):
    with org_context(org_a.id):
        for login in ("ana", "ben", "cy"):
            person = DeveloperIdentity.objects.create(
                organization=org_a, github_login=login, email=f"{login}@example.com"
            )
            DeveloperTeam.objects.create(
                organization=org_a,
                developer_identity=person,
                team="platform",
                source="identity_map",
            )
    campaign = creator.campaign(org_a, alice)
    log_in(page, alice.email)
    page.goto(f"/o/{org_a.slug}/campaigns/{campaign.pk}/participants/add/")
    page.get_by_label("Group").select_option(label="Team platform (3)")
    screenshot("participants-from-group")
    page.get_by_role("button", name="Add this group").click()
    expect(page.get_by_text("Added 3")).to_be_visible()
    page.get_by_role("link", name="Back to the campaign").click()
    expect(page.get_by_text("Developer: ana")).to_be_visible()
    screenshot("campaign-linked-developers")

    analysed, _truth = planted_campaign(org_a, alice)
    link_with_usage(org_a, {**dict.fromkeys(range(12), 100), 12: 1, 13: 1, 14: 1}, analysed)
    with org_context(org_a.id):
        service.campaign_analyze(actor=None, campaign=analysed)
    outbox.run_due_inline()
    page.goto(f"/o/{org_a.slug}/campaigns/{analysed.pk}/analysis/")
    section = page.get_by_role("region", name="By AI-tool usage")
    expect(section).to_be_visible()
    expect(section.get_by_role("cell", name="fewer than 5")).to_be_visible()
    screenshot("analysis-by-usage")
    problems.assert_none()
