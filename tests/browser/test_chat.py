"""The chat in a real browser: a participant opens the emailed link, answers three questions
through htmx (the reply arrives by polling) and reaches the closing message; the creator
watches the transcript update live and reads it. No console errors, no CSP violations.

The interviewer's replies come from the outbox run in this process (`outbox.run_due_inline`):
the live server is a thread of the same process, and the data is committed.

    TAP_SCREENSHOTS=1 make test PYTEST_ARGS="tests/browser/test_chat.py -q"
"""

from __future__ import annotations

import re

import pytest
from django.core import mail

from conversations.models import Conversation
from tap import outbox
from tap.tenancy import org_context
from tests.browser.conftest import CSP_REPORTER, DESKTOP
from tests.browser.test_campaign_creator import log_in
from tests.campaigns import creator
from tests.campaigns.test_participant_links import OPENING, active_campaign, link_in
from tests.conversations.test_chat_page import ANSWERS, with_mission

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips (or, on CI, fails) and says why
    expect = None

pytestmark = [
    pytest.mark.browser,
    pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"]),
]

PHONE = {"width": 390, "height": 844}
FOLLOW_UPS = (
    "where AI coding assistants help our engineers",
    "what training would make them more useful",
    "that's all my questions",
)


def watched_page(browser, live_server, problems):
    """A second browser (the creator's), its console watched like the `page` fixture's."""
    context = browser.new_context(base_url=live_server.url, viewport=DESKTOP)
    context.add_init_script(CSP_REPORTER)
    other = context.new_page()
    other.set_default_timeout(10_000)
    other.on(
        "console",
        lambda m: m.type == "error" and problems.seen.append((other.url, m.text)),
    )
    other.on("pageerror", lambda exc: problems.seen.append((other.url, f"uncaught: {exc}")))
    return other


def test_a_participant_answers_three_questions_and_the_creator_watches(
    page, browser, live_server, problems, screenshot, alice, org_a
):
    campaign = with_mission(active_campaign(org_a, alice, max_follow_ups=2))
    page.goto(link_in(mail.outbox[0]))
    assert page.url.endswith("/c/")
    expect(page.get_by_role("heading", name="Tooling")).to_be_visible()
    expect(page.get_by_text("an AI asks follow-up questions")).to_be_visible()
    expect(page.get_by_text(OPENING)).to_be_visible()
    problems.assert_none("on the chat page")
    done = page.get_by_role("link", name="I'm done")
    expect(done).to_have_count(0)  # nothing to finish before the first answer
    screenshot("chat")
    page.set_viewport_size(PHONE)
    screenshot("chat-phone")
    page.set_viewport_size(DESKTOP)

    box = page.get_by_label("Your answer")
    typing = page.get_by_role("status").filter(has_text="The interviewer is writing a reply")
    watcher = None
    for number, (answer, follow_up) in enumerate(zip(ANSWERS, FOLLOW_UPS, strict=True), 1):
        box.fill(answer)
        page.get_by_role("button", name="Send").click()
        # The htmx post came back (committed): the answer shows, the box waits for the reply.
        expect(page.locator(".chat-message--participant").last).to_have_text(
            re.compile(re.escape(answer))
        )
        expect(typing).to_be_attached()
        expect(box).to_be_disabled()
        assert page.url.endswith("/c/")  # no full-page post: htmx swapped the chat
        if number == 1:
            screenshot("chat-pending")
            page.set_viewport_size(PHONE)
            screenshot("chat-pending-phone")
            page.set_viewport_size(DESKTOP)
        if number == 3:
            # The creator opens the running conversation before the last reply.
            watcher = watched_page(browser, live_server, problems)
            log_in(watcher, alice.email)
            with org_context(org_a.id):
                conversation = Conversation.objects.get()
            watcher.goto(creator.url("transcript", org_a, campaign.pk, conversation.pk))
            expect(watcher.get_by_text(answer)).to_be_visible()
            expect(watcher.get_by_text("offline interviewer")).to_be_visible()
        outbox.run_due_inline()
        # The poll brings the reply within a second or so, and switches the box back on.
        expect(page.get_by_text(follow_up)).to_be_visible()
        expect(typing).to_have_count(0)
        problems.assert_none(f"after answer {number}")
        if number < 3:
            expect(done).to_be_visible()
            expect(box).to_be_enabled()
            expect(box).to_be_focused()

    expect(page.get_by_text("Thank you for taking the time to share")).to_be_visible()
    expect(page.get_by_text("Thank you — this conversation is complete.")).to_be_visible()
    expect(page.get_by_label("Your answer")).to_have_count(0)
    screenshot("chat-completed")
    page.set_viewport_size(PHONE)
    screenshot("chat-completed-phone")

    # Coming back later shows the same, read-only transcript.
    page.reload()
    expect(page.get_by_text(ANSWERS[0])).to_be_visible()
    expect(page.get_by_text("Thank you — this conversation is complete.")).to_be_visible()
    problems.assert_none("on the completed chat")

    # The creator's page updated by itself: the closing reply and the ended status.
    expect(watcher.get_by_text("that's all my questions")).to_be_visible()
    expect(watcher.get_by_text("follow-up limit reached")).to_be_visible()
    for answer in ANSWERS:
        expect(watcher.get_by_text(answer)).to_be_visible()
    screenshot("creator-transcript-live", on=watcher)
    problems.assert_none("on the creator's transcript")
    watcher.context.close()
