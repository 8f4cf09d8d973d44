"""/healthz is liveness (no dependency checked), /readyz is readiness (database, Redis,
migrations applied)."""

import pytest
from django.db import connections
from django.db.migrations.recorder import MigrationRecorder

import tap.views

DEAD_REDIS = "redis://127.0.0.1:1/0"  # nothing listens on port 1


@pytest.fixture(autouse=True)
def _forget_migration_latch(monkeypatch):
    monkeypatch.setattr(tap.views, "_migrations_applied", False)


@pytest.mark.django_db
def test_readyz_is_200_with_every_check_passing(client):
    response = client.get("/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ok",
        "checks": {"database": True, "redis": True, "migrations": True},
        "failed": [],
    }
    assert "no-cache" in response["Cache-Control"]


@pytest.mark.django_db
def test_readyz_is_503_naming_redis_when_redis_is_down(client, settings):
    settings.REDIS_URL = DEAD_REDIS
    settings.CACHES = {
        "default": {**settings.CACHES["default"], "LOCATION": DEAD_REDIS},
    }
    response = client.get("/readyz")
    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["failed"] == ["redis"]
    assert body["checks"] == {"database": True, "redis": False, "migrations": True}


@pytest.mark.django_db
def test_healthz_stays_200_when_redis_is_down(client, settings):
    settings.REDIS_URL = DEAD_REDIS
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


def test_healthz_answers_without_touching_the_database(client):
    # No django_db mark: pytest-django refuses any database access here, and Django turns
    # that refusal into a 500. Liveness must not need the database.
    response = client.get("/healthz")
    assert response.status_code == 200


@pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])
def test_readyz_is_503_naming_the_database_when_it_is_unreachable(client, monkeypatch):
    # A database that refuses connections: the probe answers 503, it does not crash (500).
    connection = connections["default"]
    connection.close()
    monkeypatch.setitem(connection.settings_dict, "PORT", "1")
    monkeypatch.setitem(connection.settings_dict, "HOST", "127.0.0.1")
    try:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["failed"] == ["database", "migrations"]
        assert client.get("/healthz").status_code == 200
    finally:
        connection.close()


@pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])
def test_readyz_is_503_while_a_migration_is_unapplied(client):
    recorder = MigrationRecorder(connections["owner"])
    app, name = max(
        (m for m in recorder.applied_migrations() if m[0] == "orgs"), key=lambda m: m[1]
    )
    recorder.record_unapplied(app, name)
    try:
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["failed"] == ["migrations"]
    finally:
        recorder.record_applied(app, name)
    assert client.get("/readyz").status_code == 200


@pytest.mark.django_db
def test_probes_refuse_other_methods(client):
    assert client.post("/healthz").status_code == 405
    assert client.post("/readyz").status_code == 405
