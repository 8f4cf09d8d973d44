"""End to end in a real browser: an owner signs up, creates an organisation and invites a
member; the member follows the emailed link, creates an account and sees the org read-only.

The invitation email goes through the outbox like in production; the test relays it inline
(`run_due_inline`) and reads the link from the locmem mailbox.
"""

from __future__ import annotations

import re

import pytest
from django.core import mail

import tap.orgs.tasks  # noqa: F401 - registers the email tasks that run_due_inline runs
from tap import outbox
from tests.conftest import PASSWORD

try:
    from playwright.sync_api import expect
except ImportError:  # the `browser` fixture skips (or, on CI, fails) and says why
    expect = None

pytestmark = [
    pytest.mark.browser,
    # The live server commits; the outbox relay runs on the service connection, and emptying
    # the database after the test on the owner connection (tap's `flush`).
    pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"]),
]

OWNER = "olivia@acme.example"
MEMBER = "max@acme.example"
ORG = "Acme Feedback"
PHONE = {"width": 390, "height": 844}


def sign_up(page, *, name: str, email: str | None = None) -> None:
    """Fill and send the sign-up form on the current page."""
    page.get_by_label("Your name").fill(name)
    if email is not None:
        page.get_by_label("Email").fill(email)
    page.get_by_label("Password", exact=True).fill(PASSWORD)
    page.get_by_label("Password again").fill(PASSWORD)
    page.get_by_role("button", name="Sign up").click()


def org_nav(page):
    return page.get_by_role("navigation", name="Organisation")


def test_owner_invites_a_member_who_signs_up_and_sees_the_org_read_only(
    page, live_server, settings, problems, screenshot
):
    settings.TAP_BASE_URL = live_server.url  # links in emails point at the live server

    # --- the owner signs up and creates an organisation --------------------------------------
    page.goto("/accounts/signup/")
    expect(page.get_by_role("heading", name="Create your Tap account")).to_be_visible()
    screenshot("02-signup")
    sign_up(page, name="Olivia Owner", email=OWNER)

    expect(page).to_have_url(re.compile(r"/orgs/new/$"))
    expect(page.get_by_role("alert")).to_contain_text("Welcome to Tap.")
    screenshot("03-org-create")
    page.get_by_label("Organisation name").fill(ORG)
    page.get_by_role("button", name="Create").click()

    expect(page).to_have_url(re.compile(r"/o/acme-feedback[-0-9a-f]*/$"))
    slug = page.url.rstrip("/").rsplit("/", 1)[-1]
    expect(page.get_by_role("heading", level=1, name=ORG)).to_be_visible()
    expect(page.get_by_text("You are owner here")).to_be_visible()
    expect(org_nav(page).get_by_role("link", name="Settings")).to_be_visible()
    screenshot("04-dashboard-owner")
    problems.assert_none("while the owner signed up")

    # --- the owner invites a member ----------------------------------------------------------
    org_nav(page).get_by_role("link", name="Members").click()
    expect(page).to_have_url(re.compile(rf"/o/{slug}/members/$"))
    invite = page.locator("form").filter(has=page.get_by_role("button", name="Send invitation"))
    invite.get_by_label("Email").fill(MEMBER)
    invite.get_by_label("Role").select_option("member")
    invite.get_by_role("button", name="Send invitation").click()
    expect(page.get_by_role("alert")).to_contain_text(f"Invitation sent to {MEMBER}.")
    invitations = page.get_by_role("region", name="Open invitations")
    expect(invitations.get_by_role("listitem").filter(has_text=MEMBER)).to_be_visible()

    # The email is queued in the outbox; relay it here as the worker would.
    mail.outbox.clear()
    assert outbox.run_due_inline() >= 1
    emails = [m for m in mail.outbox if m.to == [MEMBER]]
    assert len(emails) == 1, [m.subject for m in mail.outbox]
    assert ORG in emails[0].subject
    links = re.findall(r"https?://\S+/invitations/[^/\s]+/", emails[0].body)
    assert links, emails[0].body
    link = links[0]
    assert link.startswith(live_server.url)

    page.reload()
    expect(invitations).to_contain_text("email sent")
    screenshot("05-members-owner")
    desktop = page.viewport_size
    page.set_viewport_size(PHONE)
    screenshot("05b-members-owner-phone")
    page.set_viewport_size(desktop)

    org_nav(page).get_by_role("link", name="Activity").click()
    expect(page.get_by_role("table")).to_contain_text("member.invited")
    screenshot("09-activity")
    problems.assert_none("while the owner invited")

    # --- the owner logs out ------------------------------------------------------------------
    page.get_by_role("button", name=OWNER).click()
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(re.compile(r"/accounts/login/$"))
    expect(page.get_by_role("heading", name="Log in to Tap")).to_be_visible()
    screenshot("01-login")

    # --- the member follows the link and signs up through it ---------------------------------
    page.goto(link)
    expect(page).to_have_url(re.compile(r"/invitations/accept/$"))  # the token left the URL
    expect(page.get_by_role("heading", name=f"Join {ORG}")).to_be_visible()
    expect(page.get_by_text(f"invited {MEMBER} to join as member")).to_be_visible()
    screenshot("07-invitation")
    page.get_by_role("link", name="Create an account").click()

    expect(page).to_have_url(re.compile(r"/accounts/signup/\?"))
    expect(page.get_by_label("Email")).to_have_value(MEMBER)
    sign_up(page, name="Max Member")

    expect(page).to_have_url(re.compile(r"/invitations/accept/$"))
    page.get_by_role("button", name="Accept and join").click()

    # --- the member sees the organisation read-only ------------------------------------------
    expect(page).to_have_url(re.compile(rf"/o/{slug}/$"))
    expect(page.get_by_role("alert")).to_contain_text(f"Welcome to {ORG}.")
    expect(page.get_by_text("You are member here")).to_be_visible()
    expect(org_nav(page).get_by_role("link", name="Members")).to_be_visible()
    expect(org_nav(page).get_by_role("link", name="Settings")).to_have_count(0)
    expect(org_nav(page).get_by_role("link", name="Activity")).to_have_count(0)
    screenshot("04b-dashboard-member")

    org_nav(page).get_by_role("link", name="Members").click()
    expect(page.get_by_role("table")).to_contain_text(MEMBER)
    expect(page.get_by_role("table")).to_contain_text(OWNER)
    expect(page.get_by_role("button", name="Send invitation")).to_have_count(0)
    expect(page.get_by_role("button", name="Remove")).to_have_count(0)
    expect(page.get_by_role("combobox")).to_have_count(0)
    expect(page.get_by_role("region", name="Open invitations")).to_have_count(0)
    screenshot("06-members-member")

    settings_url = f"{live_server.url}/o/{slug}/settings/"
    problems.allow(settings_url, r"status of 403")  # Chromium notes the status on the console
    response = page.goto(settings_url)
    assert response is not None
    assert response.status == 403
    expect(page.get_by_role("heading", name="You can't do that here")).to_be_visible()
    expect(page.get_by_text("Only owners can change the organisation's settings.")).to_be_visible()
    screenshot("08-forbidden")

    # The navigation collapses into a menu on a phone.
    page.set_viewport_size(PHONE)
    page.goto(f"/o/{slug}/")
    toggler = page.get_by_role("button", name="Toggle navigation")
    expect(toggler).to_be_visible()
    toggler.click()
    expect(page.get_by_role("button", name=MEMBER)).to_be_visible()
    screenshot("10-dashboard-member-phone")

    problems.assert_none("while the member joined")
