"""Metrics in a real browser: an admin uploads a Copilot export, watches the progress bar,
sees the run succeed (htmx polling, no reload) and the dashboard chart draw. No CSP
violations or console errors.

    TAP_SCREENSHOTS=1 make test PYTEST_ARGS="tests/browser/test_metrics_upload.py -q"
"""

from __future__ import annotations

import pytest

from tap import outbox
from tests.browser.test_campaign_creator import log_in
from tests.metrics.helpers import copilot_record, ndjson

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips (or, on CI, fails) and says why
    expect = None

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"]),
]


def test_upload_progress_succeeded_chart(page, org_a, dave, screenshot, tmp_path, settings):
    settings.TAP_METRICS_UPLOAD_DIR = tmp_path / "uploads"
    export = tmp_path / "users-1-day.ndjson"
    export.write_text(
        ndjson(
            [
                copilot_record(
                    f"dev{i}", day=f"2026-04-{d:02d}", code_generation_activity_count=5 + i * d
                )
                for i in range(8)
                for d in range(1, 15)
            ]
        )
    )
    log_in(page, dave.email)
    page.goto(f"/o/{org_a.slug}/")
    page.get_by_role("navigation", name="Organisation").get_by_role("link", name="Metrics").click()
    expect(page.get_by_text("No metrics in this range yet")).to_be_visible()
    page.get_by_role("navigation", name="Metrics").get_by_role("link", name="Upload").click()
    page.get_by_label("Files").set_input_files(str(export))
    screenshot("metrics-upload")
    page.get_by_role("button", name="Upload").click()

    # The run page: pending, with a progress bar that polls.
    status = page.locator("#run-status")
    expect(status).to_have_attribute("data-status", "pending")
    expect(page.locator("progress#run-progress")).to_be_visible()
    screenshot("metrics-run-pending")

    outbox.run_due_inline()  # the ingest worker

    expect(status).to_have_attribute("data-status", "succeeded", timeout=10_000)
    expect(status.get_by_text("Succeeded")).to_be_visible()
    expect(status.get_by_text("112 new rows")).to_be_visible()
    screenshot("metrics-run-succeeded")

    page.get_by_role("link", name="See the dashboard").click()
    chart = page.get_by_role("img", name="Suggestions and acceptances per day")
    expect(chart).to_be_visible()
    assert chart.locator("polyline").count() == 2
    page.get_by_text("Table").first.click()
    expect(page.get_by_role("table", name="Active developers per day")).to_be_visible()
    screenshot("metrics-overview")
