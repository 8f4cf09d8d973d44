"""Member invitations: emailed link, valid 7 days, single use, for the invited address."""

import re
import socket
from datetime import timedelta

import pytest
import time_machine
from django.core import mail
from django.utils import timezone

from tap import outbox
from tap.models import OutboxJob
from tap.orgs.models import Invitation, Organization, OrganizationMember, User
from tap.tenancy import org_context, org_scope
from tests.conftest import PASSWORD, make_user

# The outbox is read through the service connection: the data must really be committed.
pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])


def invite(client, org, email="new@a.example", role="member"):
    response = client.post(f"/o/{org.slug}/members/invite/", {"email": email, "role": role})
    assert response.status_code == 302
    outbox.run_due_inline()
    return re.search(r"http://testserver(/invitations/\S+/)", mail.outbox[-1].body).group(1)


ACCEPT = "/invitations/accept/"


def accept(client, link, **kwargs):
    """Open the emailed link (token → session), then accept on the token-free page."""
    assert client.get(link)["Location"] == ACCEPT
    return client.post(ACCEPT, **kwargs)


def test_invitation_email_names_the_org_and_links_to_the_invitation(client, alice, org_a):
    client.force_login(alice)
    link = invite(client, org_a)
    message = mail.outbox[0]
    assert message.to == ["new@a.example"]
    assert "Org A" in message.subject
    assert "Org A on Tap" in message.from_email
    html = message.alternatives[0][0]
    assert link in html
    with org_context(org_a.id):
        assert Invitation.objects.get().email_status == "sent"


def test_invitation_text_is_not_html_escaped(client, alice, org_a):
    """Subject and plain-text body are text: "R&D" must not arrive as "R&amp;D"."""
    with org_context(org_a.id):
        assert Organization.objects.filter(pk=org_a.pk).update(name='R&D "Labs"') == 1
    User.objects.filter(pk=alice.pk).update(name="Alice O'Neil")
    client.force_login(alice)
    invite(client, org_a)
    message = mail.outbox[0]
    assert message.subject == 'Alice O\'Neil invited you to R&D "Labs" on Tap'
    assert 'Alice O\'Neil invited you to join R&D "Labs" on Tap as member.' in message.body
    assert "&amp;" not in message.body
    html = message.alternatives[0][0]
    assert "R&amp;D &quot;Labs&quot;" in html  # the HTML part stays escaped


def invitation_jobs():
    return OutboxJob.objects.using("service").filter(task="orgs.send_member_invitation")


def test_an_invitation_email_that_cannot_be_sent_ends_failed(client, alice, org_a, settings):
    settings.TAP_OUTBOX_MAX_ATTEMPTS_BY_QUEUE = {"email": 2}
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    with socket.socket() as s:  # a port nothing listens on: the SMTP server is down
        s.bind(("127.0.0.1", 0))
        settings.EMAIL_HOST, settings.EMAIL_PORT = s.getsockname()
    client.force_login(alice)
    client.post(f"/o/{org_a.slug}/members/invite/", {"email": "erin@example.com", "role": "member"})
    outbox.run_due_inline()  # attempt 1
    with org_context(org_a.id):
        assert Invitation.objects.get().email_status == "pending"  # a retry follows
    invitation_jobs().update(available_at=timezone.now())
    outbox.run_due_inline()  # attempt 2, the last
    assert invitation_jobs().get().status == "dead"
    with org_context(org_a.id):
        assert Invitation.objects.get().email_status == "failed"
    page = client.get(f"/o/{org_a.slug}/members/").content.decode()
    assert "could not be sent: invite erin@example.com again" in page


def test_an_invitation_left_sending_by_a_dead_worker_ends_failed(client, alice, org_a):
    client.force_login(alice)
    client.post(f"/o/{org_a.slug}/members/invite/", {"email": "erin@example.com", "role": "member"})
    with org_context(org_a.id):  # a worker claimed it, then died talking to the server
        Invitation.objects.update(
            email_status="sending", updated_at=timezone.now() - timedelta(hours=1)
        )
    outbox.run_due_inline()  # the job runs again once its lease is over
    assert mail.outbox == []  # delivery is unknown: not sent twice
    with org_context(org_a.id):
        assert Invitation.objects.get().email_status == "failed"


def test_a_new_person_signs_up_through_the_link_and_joins(client, alice, org_a):
    client.force_login(alice)
    link = invite(client, org_a, role="admin")
    client.logout()
    response = client.get(link)
    assert response["Location"] == ACCEPT  # the token left the URL for the session
    page = client.get(ACCEPT).content.decode()
    assert "Join Org A" in page
    assert "invitations/" + link.split("/")[2] not in page  # not even in next= links
    response = client.post(
        f"/accounts/signup/?next={ACCEPT}",
        {"email": "new@a.example", "password1": PASSWORD, "password2": PASSWORD},
    )
    assert response["Location"] == ACCEPT
    response = client.post(ACCEPT)
    assert response["Location"] == f"/o/{org_a.slug}/"
    with org_context(org_a.id):
        member = OrganizationMember.objects.get(user__email="new@a.example")
        assert member.role == "admin"
        assert Invitation.objects.get().accepted_at is not None


def test_an_existing_user_joins_on_accept(client, alice, org_a):
    erin = make_user("erin@example.com")
    client.force_login(alice)
    link = invite(client, org_a, email="erin@example.com")
    client.force_login(erin)
    assert accept(client, link).status_code == 302
    client.force_login(erin)
    assert client.get(f"/o/{org_a.slug}/").status_code == 200
    # The emailed link opened again: the one who joined goes to the organisation; anyone
    # else is told it was accepted (not to ask for a new one), and may log in.
    client.get(link)
    assert client.get(ACCEPT)["Location"] == f"/o/{org_a.slug}/"
    client.logout()
    client.get(link)
    page = client.get(ACCEPT).content.decode()
    assert "This invitation was accepted on" in page
    assert "Ask for a new one" not in page
    assert f"/accounts/login/?next=/o/{org_a.slug}/" in page.replace("%2F", "/")


def test_an_invitation_works_once(client, alice, org_a):
    erin = make_user("erin@example.com")
    client.force_login(alice)
    link = invite(client, org_a, email="erin@example.com")
    client.force_login(erin)
    accept(client, link)
    # A second click on "Join" (or on the emailed link) lands in the organisation…
    again = client.post(ACCEPT)
    assert again["Location"] == f"/o/{org_a.slug}/"
    assert accept(client, link)["Location"] == f"/o/{org_a.slug}/"
    with org_context(org_a.id):
        assert OrganizationMember.objects.filter(user=erin).count() == 1
    # …but having left, the used invitation does not let them back in.
    client.post(f"/o/{org_a.slug}/leave/")
    response = accept(client, link, follow=True)
    assert "expired or was already used" in response.content.decode()
    with org_context(org_a.id):
        assert not OrganizationMember.objects.filter(user=erin).exists()


def test_an_invitation_for_someone_else_is_refused(client, alice, bob, org_a, charlie):
    client.force_login(alice)
    link = invite(client, org_a, email="erin@example.com")
    client.force_login(charlie)
    response = accept(client, link, follow=True)
    assert "is for erin@example.com" in response.content.decode()
    client.force_login(charlie)
    assert client.get(f"/o/{org_a.slug}/").status_code == 404


def test_an_invitation_expires_after_seven_days(client, alice, org_a):
    erin = make_user("erin@example.com")
    client.force_login(alice)
    link = invite(client, org_a, email="erin@example.com")
    with time_machine.travel(timezone.now() + timedelta(days=7, minutes=1)):
        client.force_login(erin)
        response = accept(client, link, follow=True)
    assert "expired" in response.content.decode()


def test_a_revoked_invitation_is_dead(client, alice, org_a):
    erin = make_user("erin@example.com")
    client.force_login(alice)
    link = invite(client, org_a, email="erin@example.com")
    with org_context(org_a.id):
        invitation = Invitation.objects.get()
    client.post(f"/o/{org_a.slug}/invitations/{invitation.pk}/revoke/")
    client.force_login(erin)
    response = accept(client, link, follow=True)
    assert "expired or was already used" in response.content.decode()


def test_revoking_an_accepted_invitation_says_so_and_changes_nothing(client, alice, org_a):
    erin = make_user("erin@example.com")
    client.force_login(alice)
    link = invite(client, org_a, email="erin@example.com")
    with org_context(org_a.id):
        invitation = Invitation.objects.get()
    client.force_login(erin)
    accept(client, link)
    client.force_login(alice)
    revoke = f"/o/{org_a.slug}/invitations/{invitation.pk}/revoke/"
    response = client.post(revoke, follow=True)
    html = response.content.decode()
    assert "accepted this invitation already and is a member" in html
    assert "was revoked." not in html
    with org_context(org_a.id):
        invitation.refresh_from_db()
        assert invitation.revoked_at is None
        assert OrganizationMember.objects.filter(user=erin).exists()


def test_revoking_twice_says_it_was_revoked_already(client, alice, org_a):
    client.force_login(alice)
    invite(client, org_a, email="erin@example.com")
    with org_context(org_a.id):
        invitation = Invitation.objects.get()
    revoke = f"/o/{org_a.slug}/invitations/{invitation.pk}/revoke/"
    assert "was revoked." in client.post(revoke, follow=True).content.decode()
    assert "was revoked already" in client.post(revoke, follow=True).content.decode()


def test_logging_out_of_the_wrong_account_keeps_the_invitation(client, alice, charlie, org_a):
    erin = make_user("erin@example.com")
    client.force_login(alice)
    link = invite(client, org_a, email="erin@example.com")
    client.force_login(charlie)  # the link opened where another account is logged in
    assert client.get(link)["Location"] == ACCEPT
    page = client.get(ACCEPT).content.decode()
    assert "You are logged in as charlie@b.example" in page
    assert 'name="keep_invitation"' in page
    response = client.post("/accounts/logout/", {"keep_invitation": "1"})
    assert response["Location"] == ACCEPT  # logged out, the invitation still at hand
    assert "_auth_user_id" not in client.session
    page = client.get(ACCEPT).content.decode()
    assert "I have an account" in page
    response = client.post(
        f"/accounts/login/?next={ACCEPT}",
        {"username": "erin@example.com", "password": PASSWORD, "next": ACCEPT},
    )
    assert response["Location"] == ACCEPT
    assert client.post(ACCEPT)["Location"] == f"/o/{org_a.slug}/"
    with org_context(org_a.id):
        assert OrganizationMember.objects.filter(user=erin).exists()
    # An ordinary logout leaves nothing behind.
    client.post("/accounts/logout/")
    assert client.get(ACCEPT).status_code == 404


def test_a_forged_or_mangled_link_is_404(client, alice, org_a):
    client.force_login(alice)
    link = invite(client, org_a)
    assert client.get(link[:-5] + "xxxx/").status_code == 404
    assert client.get("/invitations/not-a-token/").status_code == 404
    assert client.get(ACCEPT).status_code == 404  # nothing in the session


def test_inviting_a_member_again_is_refused_and_bad_addresses_too(client, alice, bob, org_a):
    client.force_login(alice)
    response = client.post(
        f"/o/{org_a.slug}/members/invite/", {"email": bob.email, "role": "member"}, follow=True
    )
    assert "already a member" in response.content.decode()
    response = client.post(
        f"/o/{org_a.slug}/members/invite/",
        {"email": "not an address", "role": "member"},
        follow=True,
    )
    assert "valid email" in response.content.decode()
    # The page comes back with the reason and what was typed, to correct it.
    assert response.status_code == 200
    form = response.context["invite_form"]
    assert form.errors["email"]
    assert 'value="not an address"' in response.content.decode()
    with org_context(org_a.id):
        assert Invitation.objects.count() == 0


def test_the_email_is_sent_once_even_if_the_job_runs_twice(client, alice, org_a):
    from tap.orgs.tasks import send_member_invitation

    client.force_login(alice)
    invite(client, org_a)
    with org_context(org_a.id):
        invitation = Invitation.objects.get()
    with org_scope(org_a.id):
        send_member_invitation.outbox_body(invitation_id=str(invitation.pk))
    assert len(mail.outbox) == 1


def test_a_double_click_on_invite_sends_one_email_and_keeps_its_link_working(client, alice, org_a):
    client.force_login(alice)
    link = invite(client, org_a, email="erin@example.com")
    response = client.post(
        f"/o/{org_a.slug}/members/invite/",
        {"email": "Erin@Example.com", "role": "member"},
        follow=True,
    )
    assert "went to erin@example.com a moment ago" in response.content.decode()
    outbox.run_due_inline()
    assert len(mail.outbox) == 1
    with org_context(org_a.id):
        assert Invitation.objects.get().revoked_at is None
    # Another role is another invitation; so is inviting again after a minute.
    client.post(f"/o/{org_a.slug}/members/invite/", {"email": "erin@example.com", "role": "admin"})
    outbox.run_due_inline()
    with time_machine.travel(timezone.now() + timedelta(minutes=2)):
        client.post(
            f"/o/{org_a.slug}/members/invite/", {"email": "erin@example.com", "role": "admin"}
        )
        outbox.run_due_inline()
    assert len(mail.outbox) == 3
    with org_context(org_a.id):
        assert Invitation.objects.filter(revoked_at=None).count() == 1
    client.logout()
    assert client.get(link)["Location"] == ACCEPT
    assert "expired, was revoked" in client.get(ACCEPT).content.decode()
