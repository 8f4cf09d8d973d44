"""Row-level security, checked through the app role on real, separate connections.

Every test here commits real data (transactional tests): the checks run over connections of
their own, never inside a test transaction that would hide what another connection sees.
"""

from __future__ import annotations

import datetime
import uuid

import psycopg
import pytest
from django.apps import apps
from django.conf import settings
from django.db import connection, connections
from django.test import Client, override_settings
from django.urls import path

from campaigns.models import Campaign, CampaignEmail, Participant, ParticipantLink
from conversations.models import CampaignAnalysis, Conversation, ConversationAnalysis, Message
from metrics.models import (
    CopilotSeat,
    DailyDeveloperMetric,
    DeveloperIdentity,
    DeveloperTeam,
    MetricApiKey,
    MetricIngestionRun,
)
from tap import outbox
from tap.models import TenantModel
from tap.orgs import services
from tap.orgs.models import Invitation, Organization
from tap.tenancy import TenancyMiddleware, activate_org, current_org_id, org_context
from tests.conftest import PASSWORD, make_user

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])


def tenant_tables() -> list[str]:
    """Every table holding tenant rows, discovered from the models (new ones are covered)."""
    tables = {
        m._meta.db_table
        for m in apps.get_models()
        if issubclass(m, TenantModel) and not m._meta.abstract
    }
    return sorted(tables | {Organization._meta.db_table})


SEED_TABLES = {
    "organizations",
    "organization_members",
    "campaigns",
    "participants",
    "conversations",
    "messages",
    "campaign_analysis",
    "developer_identities",
    "daily_developer_metrics",
    "metric_ingestion_runs",
}


def conninfo(alias: str) -> dict:
    params = connections[alias].get_connection_params()
    params.pop("cursor_factory", None)
    params.pop("context", None)
    params.pop("prepare_threshold", None)
    return params


def app_connect() -> psycopg.Connection:
    return psycopg.connect(**conninfo("default"))


def fill_org(org, owner) -> dict:
    """One row in every tenant table of `org`, made through the ORM as the app role."""
    with org_context(org.id, user_id=owner.pk):
        campaign = Campaign.objects.create(
            organization=org, name="C", mission="Learn", opening_question="How?"
        )
        participant = Participant.objects.create(
            organization=org, campaign=campaign, email="p@example.com"
        )
        ParticipantLink.objects.create(
            organization=org, participant=participant, token_hash=uuid.uuid4().hex
        )
        CampaignEmail.objects.create(
            organization=org, participant=participant, kind="invitation", sequence=1
        )
        conversation = Conversation.objects.create(
            organization=org, campaign=campaign, participant=participant
        )
        message = Message.objects.create(
            organization=org,
            conversation=conversation,
            sender="participant",
            body="hi",
            client_key="k1",
        )
        CampaignAnalysis.objects.create(organization=org, campaign=campaign)
        ConversationAnalysis.objects.create(
            organization=org, conversation=conversation, engine="local", input_hash="h"
        )
        identity = DeveloperIdentity.objects.create(organization=org, github_login="octo")
        run = MetricIngestionRun.objects.create(organization=org, file_name="f.ndjson")
        DailyDeveloperMetric.objects.create(
            organization=org,
            developer_identity=identity,
            date=datetime.date(2026, 1, 1),
            tool="copilot",
            ingestion_run=run,
        )
        CopilotSeat.objects.create(organization=org, developer_identity=identity, ingestion_run=run)
        DeveloperTeam.objects.create(
            organization=org, developer_identity=identity, team="core", source="copilot"
        )
        MetricApiKey.objects.create(
            organization=org, name="nightly", prefix="tap_x", key_hash=uuid.uuid4().hex
        )
        Invitation.objects.create(
            organization=org,
            email="x@example.com",
            expires_at=datetime.datetime(2030, 1, 1, tzinfo=datetime.UTC),
        )
        outbox.enqueue("tests.noop", queue="default", org_id=org.id)
    return {
        "campaign": campaign,
        "participant": participant,
        "conversation": conversation,
        "message": message,
    }


@pytest.fixture
def two_orgs():
    alice = make_user("alice@a.example")
    charlie = make_user("charlie@b.example")
    org_a = services.org_create(actor=alice, name="Org A")
    org_b = services.org_create(actor=charlie, name="Org B")
    rows_a = fill_org(org_a, alice)
    rows_b = fill_org(org_b, charlie)
    return {
        "a": org_a,
        "b": org_b,
        "alice": alice,
        "charlie": charlie,
        "rows_a": rows_a,
        "rows_b": rows_b,
    }


def test_the_seed_tables_are_all_tenant_tables():
    assert set(tenant_tables()) >= SEED_TABLES


def test_posture_every_tenant_table_has_forced_rls_and_a_policy():
    with connections["service"].cursor() as cursor:
        for table in tenant_tables():
            cursor.execute(
                "SELECT relrowsecurity, relforcerowsecurity FROM pg_class "
                "WHERE relname = %s AND relnamespace = 'public'::regnamespace",
                [table],
            )
            assert cursor.fetchone() == (True, True), table
            cursor.execute("SELECT count(*) FROM pg_policies WHERE tablename = %s", [table])
            assert cursor.fetchone()[0] >= 1, f"{table} has no policy"
            cursor.execute(
                "SELECT column_name FROM information_schema.columns "
                "WHERE table_name = %s AND column_name IN ('organization_id', 'id')",
                [table],
            )
            assert cursor.fetchall(), table


def test_posture_the_app_role_owns_nothing_and_cannot_bypass():
    app_role = settings.DATABASES["default"]["USER"]
    with connections["service"].cursor() as cursor:
        cursor.execute(
            "SELECT rolsuper, rolbypassrls, rolcreaterole, rolcreatedb FROM pg_roles "
            "WHERE rolname = %s",
            [app_role],
        )
        assert cursor.fetchone() == (False, False, False, False)
        cursor.execute(
            "SELECT count(*) FROM pg_class c JOIN pg_roles r ON r.oid = c.relowner "
            "WHERE r.rolname = %s",
            [app_role],
        )
        assert cursor.fetchone()[0] == 0
        cursor.execute(
            "SELECT count(*) FROM pg_auth_members m JOIN pg_roles r ON r.oid = m.member "
            "WHERE r.rolname = %s",
            [app_role],
        )
        assert cursor.fetchone()[0] == 0, "the app role is a member of another role"
        for table in tenant_tables():
            cursor.execute("SELECT has_table_privilege(%s, %s, 'TRUNCATE')", [app_role, table])
            assert cursor.fetchone()[0] is False, f"app role may TRUNCATE {table}"


def test_without_org_context_every_tenant_table_reads_empty(two_orgs):
    with connections["service"].cursor() as service:
        for table in tenant_tables():
            service.execute(f"SELECT count(*) FROM {table}")
            assert service.fetchone()[0] >= 2, f"{table} is empty: the check would be vacuous"
    with app_connect() as conn:
        for table in tenant_tables():
            assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 0, table


def test_with_org_context_only_that_orgs_rows(two_orgs):
    org_a = two_orgs["a"]
    with app_connect() as conn:
        conn.execute("SELECT set_config('tap.org_id', %s, true)", [str(org_a.id)])
        for table in tenant_tables():
            column = "id" if table == "organizations" else "organization_id"
            rows = conn.execute(f"SELECT DISTINCT {column} FROM {table}").fetchall()
            assert rows == [(org_a.id,)], table


def test_writing_into_another_org_is_refused(two_orgs):
    org_a, org_b = two_orgs["a"], two_orgs["b"]
    with app_connect() as conn:
        conn.execute("SELECT set_config('tap.org_id', %s, true)", [str(org_a.id)])
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO campaigns (id, organization_id, name, mission, mission_summary, "
                "opening_question, status, settings, created_at, updated_at) VALUES "
                "(%s, %s, 'x', 'm', '', 'q', 'draft', '{}', now(), now())",
                [uuid.uuid4(), org_b.id],
            )
    # Moving a row of A into B.
    with app_connect() as conn:
        conn.execute("SELECT set_config('tap.org_id', %s, true)", [str(org_a.id)])
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("UPDATE campaigns SET organization_id = %s", [org_b.id])


def test_a_foreign_key_into_another_org_is_refused(two_orgs):
    """Org A cannot attach its participant to org B's campaign, though FK checks bypass RLS."""
    org_a, campaign_b = two_orgs["a"], two_orgs["rows_b"]["campaign"]
    with app_connect() as conn:
        conn.execute("SELECT set_config('tap.org_id', %s, true)", [str(org_a.id)])
        conn.execute(
            "INSERT INTO participants (id, organization_id, campaign_id, email, name, status, "
            "reminders_sent, bounce_reason, identity_unlinked, created_at, updated_at) "
            "VALUES (%s, %s, %s, 'x@example.com', '', 'invited', 0, '', false, now(), now())",
            [uuid.uuid4(), org_a.id, campaign_b.id],
        )
        with pytest.raises(psycopg.errors.ForeignKeyViolation):
            conn.commit()  # the composite FK is deferred to commit


def test_the_app_role_cannot_escape(two_orgs):
    checks = [
        "ALTER TABLE campaigns DISABLE ROW LEVEL SECURITY",
        "ALTER TABLE campaigns NO FORCE ROW LEVEL SECURITY",
        "SET ROLE tap_owner",
        "SET ROLE tap_service",
        "SET ROLE tap_definer",
        "DROP POLICY tenant_isolation ON campaigns",
        "TRUNCATE campaigns",
    ]
    for statement in checks:
        with app_connect() as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(statement)


def test_audit_rows_cannot_be_changed_by_the_app(two_orgs):
    org_a = two_orgs["a"]
    for statement in ("UPDATE audit_events SET action = 'forged'", "DELETE FROM audit_events"):
        with app_connect() as conn:
            conn.execute("SELECT set_config('tap.org_id', %s, true)", [str(org_a.id)])
            assert conn.execute("SELECT count(*) FROM audit_events").fetchone()[0] >= 1
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_the_app_may_enqueue_only_for_its_own_org(two_orgs):
    org_a, org_b = two_orgs["a"], two_orgs["b"]
    with app_connect() as conn:
        conn.execute("SELECT set_config('tap.org_id', %s, true)", [str(org_a.id)])
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute(
                "INSERT INTO outbox_jobs (id, organization_id, task, queue, kwargs, status, "
                "attempts, max_attempts, available_at, last_error, created_at, updated_at) "
                "VALUES (%s, %s, 't', 'default', '{}', 'pending', 0, 5, now(), '', now(), now())",
                [uuid.uuid4(), org_b.id],
            )
    with app_connect() as conn, pytest.raises(psycopg.errors.InsufficientPrivilege):
        conn.execute("SELECT count(*) FROM outbox_jobs")


def test_a_user_sees_only_their_own_organisations(two_orgs):
    """Before an org is active, the org switcher shows the user's orgs and no other."""
    alice = two_orgs["alice"]
    with app_connect() as conn:
        conn.execute("SELECT set_config('tap.user_id', %s, true)", [str(alice.pk)])
        names = [r[0] for r in conn.execute("SELECT name FROM organizations").fetchall()]
        members = conn.execute("SELECT DISTINCT user_id FROM organization_members").fetchall()
    assert names == ["Org A"]
    assert members == [(alice.pk,)]


# --- the context never leaks -------------------------------------------------------------


def setting_now(alias="default") -> str:
    with connections[alias].cursor() as cursor:
        cursor.execute("SELECT coalesce(current_setting('tap.org_id', true), '')")
        return cursor.fetchone()[0]


def test_org_context_is_gone_after_the_block_and_after_an_exception(two_orgs):
    org_a = two_orgs["a"]
    with org_context(org_a.id):
        assert Campaign.objects.count() == 1
    assert setting_now() == ""
    assert current_org_id() is None
    with pytest.raises(RuntimeError), org_context(org_a.id):
        assert Campaign.objects.count() == 1
        raise RuntimeError("boom")
    assert setting_now() == ""
    assert current_org_id() is None
    with connection.cursor() as cursor:  # same reused connection, fresh transaction
        cursor.execute("SELECT count(*) FROM campaigns")
        assert cursor.fetchone()[0] == 0


def test_a_nested_context_restores_the_outer_one(two_orgs):
    org_a, org_b = two_orgs["a"], two_orgs["b"]
    with org_context(org_a.id):
        with org_context(org_b.id):
            assert Campaign.objects.get().organization_id == org_b.id
        assert Campaign.objects.get().organization_id == org_a.id
        assert setting_now() == str(org_a.id)


def boom_view(request, org_slug):
    raise RuntimeError("view failed after the org was activated")


urlpatterns = [path("boom/<slug:org_slug>/", boom_view)]


@override_settings(ROOT_URLCONF=__name__)
def test_requests_do_not_leak_the_org_to_the_next_request_on_the_same_connection(two_orgs):
    alice, org_a = two_orgs["alice"], two_orgs["a"]
    client = Client(raise_request_exception=False)
    client.force_login(alice)
    response = client.get(f"/boom/{org_a.slug}/")
    assert response.status_code == 500
    assert setting_now() == ""
    assert current_org_id() is None
    # The next request on the same (persistent) connection, anonymous: sees nothing.
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM organization_members")
        assert cursor.fetchone()[0] == 0


def test_the_real_app_leaves_no_context_behind(two_orgs):
    alice, org_a = two_orgs["alice"], two_orgs["a"]
    client = Client()
    assert client.login(username=alice.email, password=PASSWORD)
    assert client.get(f"/o/{org_a.slug}/").status_code == 200
    assert setting_now() == ""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM campaigns")
        assert cursor.fetchone()[0] == 0


def test_tasks_run_in_their_own_org_and_leave_nothing_behind(two_orgs):
    org_a, org_b = two_orgs["a"], two_orgs["b"]
    seen = []

    def body():
        seen.append((current_org_id(), [c.organization_id for c in Campaign.objects.all()]))

    for org in (org_a, org_b):
        job_id = uuid.uuid4()
        from tap.models import OutboxJob

        OutboxJob.objects.using("service").create(
            id=job_id, task="t", organization_id=org.id, status="queued"
        )
        assert outbox.execute(job_id, body) == "done"
        assert setting_now() == ""
    assert seen == [(org_a.id, [org_a.id]), (org_b.id, [org_b.id])]


def test_a_tenant_query_without_an_org_raises():
    from tap.tenancy import TenantContextMissing

    with pytest.raises(TenantContextMissing):
        list(Campaign.objects.all())


def test_activating_an_org_outside_a_transaction_is_refused():
    from tap.tenancy import TenantContextMissing

    with pytest.raises(TenantContextMissing):
        activate_org(uuid.uuid4())


def test_middleware_is_innermost():
    assert settings.MIDDLEWARE[-1] == f"{TenancyMiddleware.__module__}.TenancyMiddleware"
