"""Staff work through the Django admin, over the service connection, across organisations."""

from io import StringIO

import pytest
from django.contrib import admin
from django.core.management import call_command
from django.test import RequestFactory

from metrics import services as metrics_services
from tap.models import TenantModel


@pytest.fixture
def staff_client(client, django_user_model):
    staff = django_user_model.objects.create_superuser("staff@tap.example", "pw-staff-123")
    client.force_login(staff)
    return client


def test_every_model_is_registered():
    from django.apps import apps
    from django.db.models import CompositePrimaryKey

    ours = [
        m
        for m in apps.get_models()
        if m._meta.app_label in {"orgs", "tap", "campaigns", "conversations", "metrics"}
        # The metrics rollups are derived data kept by database triggers (staff see the daily
        # rows they come from), and Django's admin cannot register a composite primary key.
        and not isinstance(m._meta.pk, CompositePrimaryKey)
    ]
    missing = [m.__name__ for m in ours if m not in admin.site._registry]
    assert missing == []


@pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])
def test_staff_see_every_orgs_rows_in_every_changelist(staff_client, org_a, org_b):
    for model, model_admin in admin.site._registry.items():
        url = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        response = staff_client.get(url)
        assert response.status_code == 200, url
        if model._meta.db_table == "organization_members":
            page = response.content.decode()
            assert "Org A" in page
            assert "Org B" in page
        if issubclass(model, TenantModel):
            assert model_admin.get_queryset(None).db == "service"


@pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])
def test_staff_can_delete_a_user_who_belongs_to_an_org(staff_client, org_a, bob):
    from tap.orgs.models import User

    response = staff_client.post(f"/admin/orgs/user/{bob.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not User.objects.filter(pk=bob.pk).exists()


@pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])
def test_staff_cannot_delete_an_organisations_last_owner(staff_client, org_a, alice, bob):
    """Deleting the user would remove their membership: the organisation left without an
    owner could never again be managed. With a second owner, it is allowed."""
    from tap.orgs.models import OrganizationMember, User

    response = staff_client.post(f"/admin/orgs/user/{alice.pk}/delete/", {"post": "yes"})
    assert response.status_code == 403
    assert User.objects.filter(pk=alice.pk).exists()
    page = staff_client.get("/admin/orgs/user/").content.decode()
    assert "delete_selected" not in page  # no bulk delete to slip one through
    OrganizationMember.all_objects.using("service").filter(user=bob).update(role="owner")
    response = staff_client.post(f"/admin/orgs/user/{alice.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    assert not User.objects.filter(pk=alice.pk).exists()


@pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])
def test_every_admin_page_opens_for_staff(staff_client):
    """Change, add and delete pages of every model, with the demo's rows: Django builds their
    widgets, inlines and uniqueness checks from default managers, which are tenant-scoped."""
    from tap.orgs import services as org_services
    from tap.orgs.models import Organization, User
    from tap.tenancy import org_context

    call_command("seed_demo", stdout=StringIO())
    owner = User.objects.get(email="owner@example.com")
    demo_id = Organization.objects.using("service").get(slug="demo").pk
    with org_context(demo_id, user_id=owner.id):
        demo = Organization.objects.get(pk=demo_id)
        org_services.member_invite(actor=owner, org=demo, email="new@example.com", role="member")
        metrics_services.api_key_create(actor=owner, org=demo, name="nightly")

    staff_client.raise_request_exception = False
    request = RequestFactory().get("/admin/")
    request.user = User.objects.get(email="staff@tap.example")
    opened = set()
    for model, model_admin in admin.site._registry.items():
        obj = model_admin.get_queryset(None).first()
        base = f"/admin/{model._meta.app_label}/{model._meta.model_name}/"
        pages = [f"{base}add/"] if model_admin.has_add_permission(request) else []
        if obj is not None:
            pages.append(f"{base}{obj.pk}/change/")
            if model_admin.has_delete_permission(request, obj):
                pages.append(f"{base}{obj.pk}/delete/")
            opened.add(model.__name__)
        for url in pages:
            assert staff_client.get(url).status_code == 200, url
    # The pages that failed before: every tenant model with a related-row widget or inline.
    assert {
        "Organization",
        "Invitation",
        "Participant",
        "CampaignEmail",
        "Conversation",
        "Message",
        "DailyDeveloperMetric",
        "CopilotSeat",
        "DeveloperTeam",
        "MetricApiKey",
    } <= opened


def _member_change_form(member):
    return {
        "user": member.user_id,
        "organization": member.organization_id,
        "role": member.role,
    }


def _org_change_form(prefix, org, members):
    data = {
        "name": org.name,
        "slug": org.slug,
        f"{prefix}-TOTAL_FORMS": len(members),
        f"{prefix}-INITIAL_FORMS": len(members),
        f"{prefix}-MIN_NUM_FORMS": 0,
        f"{prefix}-MAX_NUM_FORMS": 1000,
    }
    for n, member in enumerate(members):
        data |= {
            f"{prefix}-{n}-id": member.pk,
            f"{prefix}-{n}-organization": org.pk,
            f"{prefix}-{n}-user": member.user_id,
            f"{prefix}-{n}-role": member.role,
        }
    return data


@pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])
def test_staff_edit_an_org_and_its_members_but_never_leave_it_without_an_owner(
    staff_client, org_a, alice
):
    from tap.orgs.models import Organization, OrganizationMember

    members = list(
        OrganizationMember.all_objects.using("service").filter(organization=org_a).order_by("pk")
    )
    sole_owner = next(m for m in members if m.role == "owner")
    assert sole_owner.user == alice
    url = f"/admin/orgs/organization/{org_a.pk}/change/"
    prefix = staff_client.get(url).context["inline_admin_formsets"][0].formset.prefix

    data = _org_change_form(prefix, org_a, members) | {"name": "Org A (renamed)"}
    response = staff_client.post(url, data)
    assert response.status_code == 302
    assert Organization.objects.using("service").get(pk=org_a.pk).name == "Org A (renamed)"

    n = members.index(sole_owner)
    for change in ({f"{prefix}-{n}-role": "admin"}, {f"{prefix}-{n}-DELETE": "on"}):
        data = _org_change_form(prefix, org_a, members) | {"name": "Org A (again)"} | change
        response = staff_client.post(url, data)
        assert response.status_code == 200
        assert "needs at least one owner" in response.content.decode()
        assert Organization.objects.using("service").get(pk=org_a.pk).name == "Org A (renamed)"
        sole_owner.refresh_from_db(using="service")
        assert sole_owner.role == "owner"

    member_url = f"/admin/orgs/organizationmember/{sole_owner.pk}/"
    response = staff_client.post(
        f"{member_url}change/", _member_change_form(sole_owner) | {"role": "member"}
    )
    assert "needs at least one owner" in response.content.decode()
    assert staff_client.post(f"{member_url}delete/", {"post": "yes"}).status_code == 403
    sole_owner.refresh_from_db(using="service")
    assert sole_owner.role == "owner"

    # With a second owner, the first may step down.
    dave = next(m for m in members if m.user.email == "dave@a.example")
    staff_client.post(
        f"/admin/orgs/organizationmember/{dave.pk}/change/",
        _member_change_form(dave) | {"role": "owner"},
    )
    response = staff_client.post(
        f"{member_url}change/", _member_change_form(sole_owner) | {"role": "member"}
    )
    assert response.status_code == 302
    sole_owner.refresh_from_db(using="service")
    assert sole_owner.role == "member"
