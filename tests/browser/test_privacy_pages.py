"""The privacy pages in a browser: erase from the participant's row, retention and export on
the settings page."""

from __future__ import annotations

import pytest

from campaigns.models import Participant
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


def test_an_admin_erases_a_participant_from_their_row(page, org_a, alice, screenshot):
    campaign = creator.campaign(org_a, alice, status="active")
    with org_context(org_a.id):
        erin = Participant.objects.create(
            organization=org_a, campaign=campaign, email="erin@x.example", name="Erin"
        )
    creator.conversation(org_a, campaign, erin, ["How was it?", "Honestly, slow."])
    log_in(page, alice.email)
    page.goto(creator.url("detail", org_a, campaign.pk))
    page.get_by_role("button", name="Actions for erin@x.example").click()
    page.get_by_role("link", name="Erase personal data…").click()
    expect(page.get_by_role("heading", name="Erase Erin\u2019s personal data?")).to_be_visible()
    screenshot("privacy-erase-confirm")

    page.get_by_label("Type the participant's email address to confirm").fill("wrong@x.example")
    page.get_by_role("button", name="Erase permanently").click()
    expect(page.get_by_text("nothing was erased")).to_be_visible()
    screenshot("privacy-erase-refused")

    page.get_by_label("Type the participant's email address to confirm").fill("erin@x.example")
    page.get_by_role("button", name="Erase permanently").click()
    expect(page.get_by_text("A participant was erased: 2 messages")).to_be_visible()
    expect(page.get_by_text("erin@x.example")).to_have_count(0)


def test_an_owner_sets_retention_and_sees_the_export(page, org_a, alice, screenshot):
    log_in(page, alice.email)
    page.goto(f"/o/{org_a.slug}/settings/")
    page.get_by_label("Delete transcripts after (days)").fill("0")
    page.get_by_role("button", name="Save retention").click()
    expect(page.get_by_text("Ensure this value is greater than or equal to 1.")).to_be_visible()
    page.get_by_label("Delete transcripts after (days)").fill("180")
    page.get_by_role("button", name="Save retention").click()
    expect(
        page.get_by_text("Transcripts are deleted 180 days after their last message.")
    ).to_be_visible()
    expect(page.get_by_role("button", name="Export all data (JSON)")).to_be_visible()
    screenshot("privacy-org-settings")
    with page.expect_download() as download:
        page.get_by_role("button", name="Export all data (JSON)").click()
    assert download.value.suggested_filename.startswith(f"{org_a.slug}-export-")
