"""The JSON logs as configured (tap/settings.py LOGGING, tap/logging.py): every line carries
the request id, organisation id and task id; nothing at INFO carries a participant token or
a message body."""

from __future__ import annotations

import io
import json
import logging
import re
import uuid

import pytest

from campaigns import services as campaign_services
from campaigns.models import Participant
from tap import outbox
from tap.tenancy import org_context
from tests.campaigns import creator

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])

SECRET_ANSWER = "My manager Zed ignores every code review I send"
CLIENT_KEY = re.compile(r'name="client_key" value="([0-9a-f]{32})"')


def capture(logger_name: str = ""):
    """A handler formatting and filtering exactly like the configured console handler,
    writing to a buffer; returns (handler, read)."""
    (console,) = [h for h in logging.getLogger().handlers if h.get_name() == "console"]
    buffer = io.StringIO()
    handler = logging.StreamHandler(buffer)
    handler.setFormatter(console.formatter)
    for log_filter in console.filters:
        handler.addFilter(log_filter)
    logging.getLogger(logger_name).addHandler(handler)

    def read() -> list[dict]:
        return [json.loads(line) for line in buffer.getvalue().splitlines() if line.strip()]

    return handler, read


@pytest.fixture
def json_lines():
    handler, read = capture()
    yield read
    logging.getLogger().removeHandler(handler)


def test_a_chat_post_logs_no_token_and_no_body(client, alice, org_a, json_lines):
    campaign = creator.campaign(org_a, alice, status="active")
    with org_context(org_a.id):
        person = Participant.objects.create(
            organization=org_a, campaign=campaign, email="p@x.example", name="Pat"
        )
        token = campaign_services.link_issue(participant=person)
    client.get(f"/c/{token}/")  # the token is exchanged for the session here
    client.get(f"/c/{'x' * 43}/")  # a wrong token: Django logs "Not Found: <path>"
    key = CLIENT_KEY.search(client.get("/c/").content.decode()).group(1)
    response = client.post("/c/messages/", {"body": SECRET_ANSWER, "client_key": key})
    assert response.status_code == 302
    assert "Zed ignores" in client.get("/c/").content.decode()  # it was stored and shown

    lines = json_lines()
    text = "\n".join(json.dumps(line) for line in lines)
    assert any(line.get("path") == "/c/messages/" for line in lines), text
    assert any(line.get("path") == "/c/[redacted]/" for line in lines)
    assert token not in text
    assert "x" * 43 not in text
    for word in ("Zed", "ignores every code review", SECRET_ANSWER):
        assert word not in text
    for line in lines:
        assert {"request_id", "org_id", "task_id", "level", "logger", "time"} <= set(line)


def test_request_and_org_ids_ride_along(client, alice, org_a, json_lines):
    client.force_login(alice)
    missing = uuid.uuid4()
    response = client.get(f"/o/{org_a.slug}/campaigns/{missing}/")
    assert response.status_code == 404
    request_id = response["X-Request-ID"]
    lines = [line for line in json_lines() if line["request_id"] == request_id]
    assert "tap.access" in {line["logger"] for line in lines}
    for line in lines:
        assert line["org_id"] == str(org_a.id)
    access = next(line for line in lines if line["logger"] == "tap.access")
    assert access["status"] == 404
    assert access["method"] == "GET"
    assert access["duration_ms"] >= 0


def test_task_lines_carry_the_task_id(alice, org_a, monkeypatch):
    from tap.models import OutboxJob

    # Running jobs inline sets Celery going, which may configure the root logger again:
    # listen on the outbox's own logger.
    handler, read = capture("tap.outbox")
    try:
        campaign = creator.campaign(org_a, alice, status="active")
        with org_context(org_a.id):
            person = Participant.objects.create(
                organization=org_a, campaign=campaign, email="p@x.example"
            )
            campaign_services.participant_resend(actor=alice, participant=person)

        def failing_send(*args, **kwargs):
            raise ConnectionRefusedError("smtp down")

        monkeypatch.setattr("django.core.mail.message.EmailMessage.send", failing_send)
        outbox.run_due_inline()
    finally:
        logging.getLogger("tap.outbox").removeHandler(handler)
    failed = [line for line in read() if line["message"] == "outbox job failed"]
    assert failed
    email_jobs = OutboxJob.objects.using("service").filter(task="campaigns.send_campaign_email")
    assert failed[0]["task_id"] in {str(pk) for pk in email_jobs.values_list("pk", flat=True)}
    # The failure is logged after the job's tenant context has closed, so its org_id is
    # empty; tap/outbox.py could pass it in `extra` (ContextFilter keeps an explicit one).
    assert "p@x.example" not in json.dumps(failed)
