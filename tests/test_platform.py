"""Health, security headers, CSP, production settings."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tap import devenv

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.django_db
def test_healthz_is_liveness_only(client, settings):
    # Readiness (database, Redis, migrations) is /readyz: tests/ops/test_probes.py.
    settings.REDIS_URL = "redis://127.0.0.1:1/0"
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


@pytest.mark.django_db
def test_pages_carry_security_headers_and_a_strict_csp(client):
    response = client.get("/accounts/login/")
    csp = response["Content-Security-Policy"]
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert "frame-ancestors 'none'" in csp
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Content-Type-Options"] == "nosniff"


@pytest.mark.django_db
def test_templates_have_no_inline_script_or_style(client):
    page = client.get("/accounts/login/").content.decode()
    assert "<script>" not in page
    assert "<style" not in page
    assert " style=" not in page


def check_deploy(**overrides):
    env = {
        **os.environ,
        "DJANGO_DEBUG": "false",
        "DJANGO_SECRET_KEY": "p" * 20 + "-production-secret-key-of-decent-length-0123456789",
        "DJANGO_ALLOWED_HOSTS": "tap.example.com",
        "EMAIL_URL": "smtp+tls://tap:secret@mail.example.com:587",
        **overrides,
    }
    env.pop("TAP_TESTING", None)
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set for the browser tests only
    for name, value in overrides.items():
        if value is None:
            env.pop(name)
    return subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_check_deploy_is_clean_with_production_settings():
    result = check_deploy()
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


def test_check_deploy_refuses_console_email_and_a_missing_service_role():
    """Both have working defaults for development, and would fail silently in production:
    invitations marked sent and never delivered; a relay refused by the database."""
    result = check_deploy(EMAIL_URL=None, DATABASE_SERVICE_URL=os.environ["DATABASE_URL"])
    assert result.returncode != 0
    assert "tap.E003" in result.stderr + result.stdout
    assert "tap.E004" in result.stderr + result.stdout


def test_the_project_lint_rules_hold():
    from tap.lint import check

    assert check() == []


def test_the_project_lint_catches_a_session_level_set_config(tmp_path, monkeypatch):
    import tap.lint

    app = tmp_path / "tap"
    app.mkdir()
    (app / "bad.py").write_text("cursor.execute(\"SELECT set_config('tap.org_id', %s, false)\")\n")
    (tmp_path / "templates").mkdir()
    monkeypatch.setattr(tap.lint, "ROOT", tmp_path)
    monkeypatch.setattr(tap.lint, "APPS", ["tap"])
    assert len(tap.lint.check()) == 1


def test_client_ip_takes_the_address_our_proxy_appended(rf, settings):
    from tap.ratelimit import client_ip

    settings.TAP_CLIENT_IP_HEADER = "HTTP_X_FORWARDED_FOR"
    request = rf.get("/", HTTP_X_FORWARDED_FOR="6.6.6.6, 203.0.113.9", REMOTE_ADDR="10.0.0.2")
    assert client_ip(request) == "203.0.113.9"  # not the forgeable left-most entry


def test_invitation_tokens_are_redacted_from_logs():
    from tap.logging import redact

    line = "Not Found: /invitations/abc.DEF:1x/ and /c/tok_en-123/decline/ and /invitations/accept/"
    assert redact(line) == (
        "Not Found: /invitations/[redacted]/ and /c/[redacted]/decline/ and /invitations/accept/"
    )
    assert redact("POST /c/messages/ and /c/poll/") == "POST /c/messages/ and /c/poll/"


def test_password_reset_tokens_are_redacted_from_logs():
    from tap.logging import redact

    line = '"GET /accounts/password/reset/MTIzNDU2/c4x9k2-0a1b2c3d4e5f/ HTTP/1.1" 302'
    assert redact(line) == ('"GET /accounts/password/reset/[redacted]/[redacted]/ HTTP/1.1" 302')
    for kept in (
        "/accounts/password/reset/",
        "/accounts/password/reset/sent/",
        "/accounts/password/reset/complete/",
        "/accounts/password/reset/MTIzNDU2/set-password/",
    ):
        assert redact(f"GET {kept} 200") == f"GET {kept} 200"


def test_make_run_splits_the_workers_per_queue_a_flag_away(monkeypatch):
    def option(command, name):
        return command[command.index(name) + 1]

    monkeypatch.delenv("TAP_WORKER_SPLIT", raising=False)
    together = devenv.worker_commands()
    assert sorted(together) == ["worker", "worker-ai"]
    assert option(together["worker"], "--queues") == "default,email,analysis,ingest"
    # Replies wait on the model: a thread pool of their own.
    assert option(together["worker-ai"], "--queues") == "ai"
    assert option(together["worker-ai"], "--pool") == "threads"
    monkeypatch.setenv("TAP_WORKER_SPLIT", "1")
    monkeypatch.setenv("TAP_WORKER_CONCURRENCY_ANALYSIS", "1")
    split = devenv.worker_commands()
    assert sorted(split) == sorted(f"worker-{q}" for q in devenv.QUEUES)
    for queue in devenv.QUEUES:
        assert option(split[f"worker-{queue}"], "--queues") == queue
    assert option(split["worker-analysis"], "--concurrency") == "1"


def test_the_app_connection_keeps_a_deployments_pgoptions():
    """libpq ignores PGOPTIONS when `options` is given, and settings give it (temp_buffers for
    ingestion): settings must carry PGOPTIONS along, after ours."""
    query = (
        "from django.db import connection; c = connection.cursor(); "
        "c.execute('SHOW statement_timeout'); a = c.fetchone()[0]; "
        "c.execute('SHOW temp_buffers'); print(a, c.fetchone()[0])"
    )
    result = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", query],
        cwd=ROOT,
        env={**os.environ, "PGOPTIONS": "-c statement_timeout=7s -c temp_buffers=32MB"},
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["7s", "32MB"]


@pytest.mark.django_db(databases=["default", "service", "owner"])
def test_every_model_change_has_its_migration():
    from django.core.management import call_command

    # Exits (SystemExit 1) when a model differs from what the migrations build.
    call_command("makemigrations", "--check", "--dry-run", verbosity=0)


def test_services_of_your_own_win_over_an_earlier_embedded_runs_env_file(tmp_path, monkeypatch):
    """`make env` wrote the embedded addresses to .env; then DATABASE_URL and REDIS_URL are
    set in the shell: those are used, and the stale service and owner URLs are not."""
    monkeypatch.setattr(devenv, "DATA", tmp_path / ".data")
    monkeypatch.setattr(devenv, "SECRETS_FILE", tmp_path / ".data" / "secrets.json")
    monkeypatch.setattr(devenv, "ENV_FILE", tmp_path / ".env")
    (tmp_path / ".env").write_text(
        "DATABASE_URL=postgres://tap_app:x@127.0.0.1:5999/tap\n"
        "DATABASE_SERVICE_URL=postgres://tap_service:x@127.0.0.1:5999/tap\n"
        "REDIS_URL=redis://127.0.0.1:6999/0\n"
        "DJANGO_DEBUG=true\n"
    )
    monkeypatch.setenv("DATABASE_URL", "postgres://me@db.internal/tap_test")
    monkeypatch.setenv("REDIS_URL", "redis://cache.internal:6379/3")
    monkeypatch.delenv("DATABASE_SERVICE_URL", raising=False)
    monkeypatch.setenv("DJANGO_DEBUG", "false")
    env, stoppers = devenv.prepare()
    assert stoppers == []  # nothing embedded was started
    assert env["DATABASE_URL"] == "postgres://me@db.internal/tap_test"
    assert env["REDIS_URL"] == "redis://cache.internal:6379/3"
    assert "DATABASE_SERVICE_URL" not in env
    assert env["DJANGO_DEBUG"] == "false"  # the shell wins over .env
