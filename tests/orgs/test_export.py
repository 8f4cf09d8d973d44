"""The owner's export of everything the organisation holds (tap/orgs/export.py)."""

import json

import pytest
from django.http import StreamingHttpResponse

from campaigns import services as campaign_services
from campaigns.models import Participant
from tap.models import TenantModel
from tap.orgs.export import SECRET_COLUMNS
from tap.orgs.models import AuditEvent
from tap.tenancy import org_context
from tests.campaigns import creator

pytestmark = pytest.mark.django_db


def url(org):
    return f"/o/{org.slug}/export/"


def all_tenant_models():
    """Found independently of the export: walk TenantModel's subclasses."""
    found, todo = set(), list(TenantModel.__subclasses__())
    while todo:
        model = todo.pop()
        todo.extend(model.__subclasses__())
        if not model._meta.abstract and not model._meta.proxy:
            found.add(model._meta.label_lower)
    return found


@pytest.fixture
def data(org_a, org_b, alice, charlie):
    campaign = creator.campaign(org_a, alice, name="Onboarding feedback", status="active")
    with org_context(org_a.id):
        person = Participant.objects.create(
            organization=org_a, campaign=campaign, email="pat@x.example", name="Pat"
        )
        campaign_services.link_issue(participant=person)
    creator.conversation(org_a, campaign, person, ["How was it?", "Slow CI, «great» people"])
    other = creator.campaign(org_b, charlie, name="Org B secret campaign", status="active")
    with org_context(org_b.id):
        stranger = Participant.objects.create(
            organization=org_b, campaign=other, email="b-only@x.example"
        )
    creator.conversation(org_b, other, stranger, ["Q", "org B words"])
    return campaign


def download(client, org):
    response = client.post(url(org))
    assert response.status_code == 200
    assert isinstance(response, StreamingHttpResponse)
    assert response["Content-Type"] == "application/json"
    assert response["Content-Disposition"].startswith(f'attachment; filename="{org.slug}-export-')
    return json.loads(b"".join(response.streaming_content))


def test_the_export_holds_the_org_its_members_and_every_tenant_table(
    org_a, alice, client_for, data
):
    document = download(client_for(alice), org_a)
    assert document["format"] == "tap-organisation-export/1"
    assert document["organization"]["slug"] == org_a.slug
    assert sorted((m["email"], m["role"]) for m in document["members"]) == [
        ("alice@a.example", "owner"),
        ("bob@a.example", "member"),
        ("dave@a.example", "admin"),
    ]
    tables = document["tables"]
    # Every tenant model of every app, including ones added after this test was written.
    assert set(tables) == all_tenant_models()
    assert {"campaigns.campaign", "conversations.message", "orgs.auditevent"} <= set(tables)
    assert [c["name"] for c in tables["campaigns.campaign"]] == ["Onboarding feedback"]
    assert [p["email"] for p in tables["campaigns.participant"]] == ["pat@x.example"]
    assert sorted(m["body"] for m in tables["conversations.message"]) == [
        "How was it?",
        "Slow CI, «great» people",
    ]
    assert len(tables["conversations.conversation"]) == 1
    assert len(tables["campaigns.participantlink"]) == 1
    assert any(e["action"] == "org.created" for e in tables["orgs.auditevent"])


def test_nothing_of_another_org_and_no_credentials(org_a, alice, client_for, data):
    raw = json.dumps(download(client_for(alice), org_a))
    assert "b-only@x.example" not in raw
    assert "org B words" not in raw
    assert "Org B secret campaign" not in raw
    assert "charlie" not in raw
    for column in SECRET_COLUMNS:
        assert f'"{column}"' not in raw


def test_the_export_is_audited(org_a, alice, client_for, data):
    download(client_for(alice), org_a)
    with org_context(org_a.id):
        event = AuditEvent.objects.get(action="org.exported")
    assert event.actor_id == alice.pk


def test_only_owners_may_export(org_a, dave, bob, charlie, client_for):
    assert client_for(dave).post(url(org_a)).status_code == 403
    assert client_for(bob).post(url(org_a)).status_code == 403
    assert client_for(charlie).post(url(org_a)).status_code == 404
    with org_context(org_a.id):
        assert not AuditEvent.objects.filter(action="org.exported").exists()


def test_get_is_405(org_a, alice, client_for):
    assert client_for(alice).get(url(org_a)).status_code == 405


def test_the_settings_page_offers_the_export_to_owners(org_a, alice, client_for):
    page = client_for(alice).get(f"/o/{org_a.slug}/settings/").content.decode()
    assert url(org_a) in page
