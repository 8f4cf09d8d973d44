"""Organisations and members: create, roles, removal, leaving — and always one owner."""

import uuid

import pytest

from tap.orgs import services
from tap.orgs.models import AuditEvent, OrganizationMember, Role, User
from tap.tenancy import org_context

pytestmark = pytest.mark.django_db(databases=["default", "service"])


def member_of(org, user):
    with org_context(org.id):
        return OrganizationMember.objects.filter(user=user).first()


def test_creating_an_org_makes_the_creator_owner_and_audits(client, alice):
    client.force_login(alice)
    response = client.post("/orgs/new/", {"name": "Acme Research"})
    assert response.status_code == 302
    slug = response["Location"].split("/")[2]
    assert slug == "acme-research"
    from tap.orgs.selectors import orgs_for_user

    with org_context(None, user_id=alice.pk):
        (org,) = orgs_for_user(user=alice)
    member_of_slug = member_of(org, alice)
    assert member_of_slug.role == Role.OWNER
    with org_context(org.id):
        assert AuditEvent.objects.filter(action="org.created").count() == 1


def test_an_org_with_an_empty_name_is_refused(client, alice):
    client.force_login(alice)
    response = client.post("/orgs/new/", {"name": "   "})
    assert response.status_code == 200
    assert "This field is required" in response.content.decode()


def test_two_orgs_with_the_same_name_get_different_addresses(alice, charlie):
    a = services.org_create(actor=alice, name="Same")
    b = services.org_create(actor=charlie, name="Same")
    assert a.slug != b.slug


def test_owner_changes_a_role(client, alice, bob, org_a):
    client.force_login(alice)
    member = member_of(org_a, bob)
    response = client.post(f"/o/{org_a.slug}/members/{member.pk}/role/", {"role": "admin"})
    assert response.status_code == 302
    assert member_of(org_a, bob).role == "admin"


def test_the_last_owner_cannot_step_down_or_leave(client, alice, org_a):
    client.force_login(alice)
    me = member_of(org_a, alice)
    response = client.post(
        f"/o/{org_a.slug}/members/{me.pk}/role/", {"role": "member"}, follow=True
    )
    assert "at least one owner" in response.content.decode()
    assert member_of(org_a, alice).role == "owner"
    assert "You are the only owner" in client.get(f"/o/{org_a.slug}/members/").content.decode()
    response = client.post(f"/o/{org_a.slug}/leave/", follow=True)
    assert "at least one owner" in response.content.decode()
    assert member_of(org_a, alice) is not None


def test_with_two_owners_one_may_leave(client, alice, bob, org_a):
    with org_context(org_a.id):
        services.member_change_role(
            actor=alice, org=org_a, member=member_of(org_a, bob), role="owner"
        )
    client.force_login(alice)
    response = client.post(f"/o/{org_a.slug}/leave/")
    assert response.status_code == 302
    assert member_of(org_a, alice) is None


def test_owner_removes_a_member(client, alice, bob, org_a):
    client.force_login(alice)
    member = member_of(org_a, bob)
    assert client.post(f"/o/{org_a.slug}/members/{member.pk}/remove/").status_code == 302
    assert member_of(org_a, bob) is None
    client.force_login(bob)
    assert client.get(f"/o/{org_a.slug}/").status_code == 404


def test_removing_or_leaving_twice_is_not_an_error(client, alice, bob, dave, org_a):
    """A double click, or two owners at once: the second finds nobody to remove."""
    client.force_login(alice)
    member = member_of(org_a, bob)
    remove = f"/o/{org_a.slug}/members/{member.pk}/remove/"
    assert client.post(remove).status_code == 302
    again = client.post(remove, follow=True)
    assert again.status_code == 200
    assert "no longer a member" in again.content.decode()
    with org_context(org_a.id):
        # The race itself: the view read the member, then someone else removed them.
        assert services.member_remove(actor=alice, org=org_a, member=member) is False
        assert AuditEvent.objects.filter(action="member.removed").count() == 1
        leaving = member_of(org_a, dave)
        services.org_leave(actor=dave, org=org_a)
        services.org_leave(actor=dave, org=org_a)
        assert AuditEvent.objects.filter(action="member.left").count() == 1
    assert leaving is not None
    assert member_of(org_a, dave) is None


def test_a_member_leaves(client, bob, org_a):
    client.force_login(bob)
    assert client.post(f"/o/{org_a.slug}/leave/").status_code == 302
    assert member_of(org_a, bob) is None


def test_an_admin_cannot_manage_members_but_sees_activity(client, dave, bob, org_a):
    client.force_login(dave)
    member = member_of(org_a, bob)
    response = client.post(f"/o/{org_a.slug}/members/{member.pk}/role/", {"role": "owner"})
    assert response.status_code == 403
    assert "Only owners" in response.content.decode()
    assert member_of(org_a, bob).role == "member"
    assert client.get(f"/o/{org_a.slug}/activity/").status_code == 200


def test_a_member_sees_the_org_read_only(client, bob, org_a):
    client.force_login(bob)
    page = client.get(f"/o/{org_a.slug}/members/").content.decode()
    assert "Invite someone" not in page
    assert "Remove" not in page
    assert client.get(f"/o/{org_a.slug}/settings/").status_code == 403
    assert client.get(f"/o/{org_a.slug}/activity/").status_code == 403


def test_a_superuser_acts_by_their_role_in_the_organisation(client, bob, alice, org_a):
    """Staff work through the admin; in a customer's organisation a superuser who is a
    plain member is a plain member (Django's superuser shortcut would make them owner)."""
    User.objects.filter(pk=bob.pk).update(is_superuser=True, is_staff=True)
    bob.refresh_from_db()
    with org_context(org_a.id):
        assert bob.has_perm("orgs.view_org", org_a)
        assert not bob.has_perm("orgs.manage_members", org_a)
    assert bob.has_perm("orgs.change_user")  # model permissions (the admin) keep working
    client.force_login(bob)
    response = client.post(f"/o/{org_a.slug}/members/{member_of(org_a, alice).pk}/remove/")
    assert response.status_code == 403
    assert member_of(org_a, alice) is not None
    assert client.get(f"/o/{org_a.slug}/settings/").status_code == 403
    assert "Invite someone" not in client.get(f"/o/{org_a.slug}/members/").content.decode()


def test_a_member_of_another_org_cannot_be_touched(client, alice, charlie, org_a, org_b):
    client.force_login(alice)
    foreign = member_of(org_b, charlie)
    response = client.post(f"/o/{org_a.slug}/members/{foreign.pk}/remove/", follow=True)
    unknown = client.post(f"/o/{org_a.slug}/members/{uuid.uuid4()}/remove/", follow=True)
    # The same answer as for an id that never existed (or a second click): nothing leaks.
    assert response.status_code == unknown.status_code == 200
    assert response.redirect_chain == unknown.redirect_chain
    assert "no longer a member" in response.content.decode()
    assert member_of(org_b, charlie) is not None


def test_renaming_the_org(client, alice, org_a):
    client.force_login(alice)
    response = client.post(f"/o/{org_a.slug}/settings/", {"name": "Org A Ltd"})
    assert response.status_code == 302
    with org_context(org_a.id):
        org_a.refresh_from_db()
    assert org_a.name == "Org A Ltd"


@pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])
def test_deleting_the_org_needs_its_slug_and_removes_everything(client, alice, org_a):
    from tap.orgs.models import Organization

    assert Organization.objects.using("service").filter(pk=org_a.pk).exists()
    client.force_login(alice)
    response = client.post(f"/o/{org_a.slug}/delete/", {"confirm": "nope"})
    assert response.status_code == 200
    response = client.post(f"/o/{org_a.slug}/delete/", {"confirm": org_a.slug})
    assert response.status_code == 302
    assert not Organization.objects.using("service").filter(pk=org_a.pk).exists()
    assert (
        not OrganizationMember.all_objects.using("service")
        .filter(organization_id=org_a.pk)
        .exists()
    )


def test_switcher_lists_only_my_orgs(client, alice, org_a, org_b):
    client.force_login(alice)
    page = client.get(f"/o/{org_a.slug}/").content.decode()
    assert "Org A" in page
    assert "Org B" not in page
