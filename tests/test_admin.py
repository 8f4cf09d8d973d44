"""Staff work through the Django admin, over the service connection, across organisations."""

import pytest
from django.contrib import admin

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
