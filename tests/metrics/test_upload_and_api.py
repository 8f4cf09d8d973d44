"""Upload page and push API: one code path through the outbox `ingest` queue; API keys."""

from __future__ import annotations

import gzip

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from metrics import services
from metrics.models import MetricApiKey, MetricIngestionRun
from tap import outbox
from tap.models import OutboxJob
from tap.tenancy import org_context
from tests.metrics.helpers import copilot_record, ndjson, rows

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])


@pytest.fixture(autouse=True)
def _uploads(settings, tmp_path):
    settings.TAP_METRICS_UPLOAD_DIR = tmp_path / "uploads"


def test_upload_page_queues_a_run_on_ingest_and_the_worker_finishes_it(
    client_for, dave, org_a, tmp_path, settings
):
    client = client_for(dave)
    data = ndjson([copilot_record(), copilot_record("hubot")]).encode()
    response = client.post(
        reverse("metrics:upload", args=[org_a.slug]),
        {
            "files": [
                SimpleUploadedFile("a.ndjson", data),
                SimpleUploadedFile("b.gz", gzip.compress(data)),
            ]
        },
    )
    assert response.status_code == 302
    with org_context(org_a.id):
        run = MetricIngestionRun.objects.get()
    assert run.status == "pending"
    assert response["Location"].endswith(f"/runs/{run.pk}/")
    job = OutboxJob.objects.using("service").get()
    assert (job.queue, job.task) == ("ingest", "metrics.process_run")
    progress = client.get(reverse("metrics:run_progress", args=[org_a.slug, run.pk]))
    assert b"hx-trigger" in progress.content  # polling while pending
    outbox.run_due_inline()
    with org_context(org_a.id):
        run.refresh_from_db()
    assert run.status == "succeeded", run.message
    assert run.uploaded_by == dave
    # Two files of one report: the same user-day summed.
    mona = next(r for r in rows(org_a) if r.developer_identity.github_login == "mona")
    assert mona.suggestions == 20
    page = client.get(reverse("metrics:run_progress", args=[org_a.slug, run.pk]))
    assert b"hx-trigger" not in page.content  # finished: polling stops
    assert b"Succeeded" in page.content
    assert not list((settings.TAP_METRICS_UPLOAD_DIR / str(org_a.id)).iterdir())


def test_upload_size_limit_has_a_clear_message(client_for, dave, org_a, settings):
    settings.TAP_METRICS_MAX_UPLOAD_BYTES = 100
    response = client_for(dave).post(
        reverse("metrics:upload", args=[org_a.slug]),
        {"files": SimpleUploadedFile("big.ndjson", b"x" * 500)},
    )
    assert response.status_code == 200
    # Exact sizes, not whole MB rounded down ("is 0 MB; the limit is 0 MB").
    assert "“big.ndjson” is 500\xa0bytes; the limit is 100\xa0bytes per file" in (
        response.content.decode()
    )
    with org_context(org_a.id):
        assert not MetricIngestionRun.objects.exists()


def test_members_cannot_upload(client_for, bob, org_a):
    response = client_for(bob).post(
        reverse("metrics:upload", args=[org_a.slug]),
        {"files": SimpleUploadedFile("a.ndjson", b"{}")},
    )
    assert response.status_code == 403


# --- API keys ------------------------------------------------------------------------------------


def make_key(org, actor, name="nightly"):
    with org_context(org.id):
        return services.api_key_create(actor=actor, org=org, name=name)


def api_post(client, org_slug, secret=None, body=b"", **extra):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {secret}"} if secret else {}
    return client.post(
        f"/api/v1/orgs/{org_slug}/metrics/uploads?filename=u.ndjson",
        data=body,
        content_type="application/x-ndjson",
        **headers,
        **extra,
    )


def test_owner_creates_a_key_shown_once_and_stored_hashed(client_for, alice, org_a):
    client = client_for(alice)
    response = client.post(reverse("metrics:api_keys", args=[org_a.slug]), {"name": "nightly"})
    secret = response.context["secret"]
    assert secret.startswith("tap_")
    assert secret in response.content.decode()
    assert response["Cache-Control"] == "no-store"
    with org_context(org_a.id):
        key = MetricApiKey.objects.get()
    assert key.key_hash == services.hash_key(secret)
    assert secret not in str(MetricApiKey.all_objects.using("service").values().get())
    again = client.get(reverse("metrics:api_keys", args=[org_a.slug]))
    assert secret not in again.content.decode()


def test_a_key_form_sent_twice_makes_one_key(client_for, alice, org_a):
    """A refresh after creating sends the form again: no second live key that nobody saw,
    under a name that would then be ambiguous to revoke."""
    client = client_for(alice)
    url = reverse("metrics:api_keys", args=[org_a.slug])
    assert client.post(url, {"name": "nightly"}).context["secret"]
    again = client.post(url, {"name": "Nightly"})
    assert again.status_code == 200
    assert again.context["secret"] is None
    assert "A live key is named “Nightly” already" in again.content.decode()
    assert 'value="Nightly"' in again.content.decode()  # what was typed, to change it
    with org_context(org_a.id):
        assert MetricApiKey.objects.count() == 1
        key = MetricApiKey.objects.get()
        services.api_key_revoke(actor=alice, org=org_a, key=key)
    # Once revoked, the name is free again.
    assert client.post(url, {"name": "nightly"}).context["secret"]
    with org_context(org_a.id):
        assert MetricApiKey.objects.filter(revoked_at__isnull=True).count() == 1


def test_admins_cannot_manage_keys(client_for, dave, org_a):
    response = client_for(dave).post(reverse("metrics:api_keys", args=[org_a.slug]), {"name": "x"})
    assert response.status_code == 403


def test_api_upload_with_a_key(client, alice, org_a):
    _key, secret = make_key(org_a, alice)
    body = ndjson([copilot_record()]).encode()
    response = api_post(client, org_a.slug, secret, body)
    assert response.status_code == 202, response.content
    payload = response.json()
    assert payload["status"] == "pending"
    assert payload["status_url"].endswith(f"/runs/{payload['run_id']}")
    outbox.run_due_inline()
    status = client.get(payload["status_url"], HTTP_AUTHORIZATION=f"Bearer {secret}")
    assert status.status_code == 200
    summary = status.json()
    assert summary["status"] == "succeeded"
    assert summary["format"] == "copilot_users"
    assert summary["rows_ingested"] == 1
    assert len(rows(org_a)) == 1


def test_api_missing_wrong_and_revoked_keys_are_401(client, alice, org_a):
    key, secret = make_key(org_a, alice)
    body = ndjson([copilot_record()]).encode()
    assert api_post(client, org_a.slug, None, body).status_code == 401
    assert api_post(client, org_a.slug, "tap_wrong", body).status_code == 401
    with org_context(org_a.id):
        services.api_key_revoke(actor=alice, org=org_a, key=key)
    response = api_post(client, org_a.slug, secret, body)
    assert response.status_code == 401
    assert response["WWW-Authenticate"].startswith("Bearer")
    with org_context(org_a.id):
        assert not MetricIngestionRun.objects.exists()


def test_api_key_with_another_orgs_slug_is_404(client, alice, org_a, org_b):
    _key, secret = make_key(org_a, alice)
    response = api_post(client, org_b.slug, secret, ndjson([copilot_record()]).encode())
    assert response.status_code == 404
    with org_context(org_b.id):
        assert not MetricIngestionRun.objects.exists()


def test_api_run_status_of_another_org_is_404(client, alice, charlie, org_a, org_b):
    _key, secret = make_key(org_a, alice)
    _key_b, secret_b = make_key(org_b, charlie)
    response = api_post(client, org_a.slug, secret, ndjson([copilot_record()]).encode())
    run_id = response.json()["run_id"]
    other = client.get(
        f"/api/v1/orgs/{org_b.slug}/metrics/runs/{run_id}", HTTP_AUTHORIZATION=f"Bearer {secret_b}"
    )
    assert other.status_code == 404


def test_the_api_is_rate_limited_per_client_before_any_key_is_checked(
    client, alice, org_a, settings
):
    settings.TAP_METRICS_API_RATE = "3/60"
    body = ndjson([copilot_record()]).encode()
    for _ in range(3):
        assert api_post(client, org_a.slug, "tap_guess", body).status_code == 401
    refused = api_post(client, org_a.slug, "tap_guess", body)
    assert refused.status_code == 429
    assert 0 < int(refused["Retry-After"]) <= 60
    with org_context(org_a.id):
        assert not MetricIngestionRun.objects.exists()


def test_uploads_are_rate_limited_per_person(client_for, dave, org_a, settings):
    settings.TAP_METRICS_UPLOAD_RATE = "1/3600"
    client = client_for(dave)
    url = reverse("metrics:upload", args=[org_a.slug])
    first = client.post(url, {})  # an empty form still counts as an attempt
    assert first.status_code == 200
    refused = client.post(url, {})
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) > 0


def test_an_upload_sent_twice_while_queued_is_one_run(client_for, dave, org_a, settings):
    """A second click on Upload (or a job that pushes twice) before the first run is done
    lands on the first run; its copy of the file is deleted. Once the run has finished, the
    same file may be uploaded again (and says that nothing changed)."""
    client = client_for(dave)
    data = ndjson([copilot_record()]).encode()
    url = reverse("metrics:upload", args=[org_a.slug])
    first = client.post(url, {"files": [SimpleUploadedFile("a.ndjson", data)]})
    second = client.post(url, {"files": [SimpleUploadedFile("a.ndjson", data)]}, follow=True)
    with org_context(org_a.id):
        run = MetricIngestionRun.objects.get()
    assert first["Location"] == second.redirect_chain[0][0]
    assert b"already being processed" in second.content
    assert len(list((settings.TAP_METRICS_UPLOAD_DIR / str(org_a.id)).iterdir())) == 1
    assert OutboxJob.objects.using("service").count() == 1
    # With "skip bad lines" it is another run.
    other = client.post(
        url, {"files": [SimpleUploadedFile("a.ndjson", data)], "skip_invalid": "on"}
    )
    assert other["Location"] != first["Location"]
    outbox.run_due_inline()
    again = client.post(url, {"files": [SimpleUploadedFile("a.ndjson", data)]})
    assert again["Location"] not in (first["Location"], other["Location"])
    with org_context(org_a.id):
        assert MetricIngestionRun.objects.count() == 3
        assert run.pk in {r.pk for r in MetricIngestionRun.objects.filter(status="succeeded")}


def test_an_api_push_repeated_while_queued_answers_with_the_same_run(client, alice, org_a):
    _key, secret = make_key(org_a, alice)
    body = ndjson([copilot_record()]).encode()
    first = api_post(client, org_a.slug, secret, body).json()
    second = api_post(client, org_a.slug, secret, body).json()
    assert (first["created"], second["created"]) == (True, False)
    assert first["run_id"] == second["run_id"]
    with org_context(org_a.id):
        assert MetricIngestionRun.objects.count() == 1


def test_a_key_in_use_by_a_long_upload_does_not_hold_other_requests(client, alice, org_a):
    """Another request holds the key's row (an upload streaming in, touching it): a status
    poll with the same key answers at once, and the key's last use is still recorded by
    the requests that can."""
    from django.db import connection, connections, transaction

    key, secret = make_key(org_a, alice)
    payload = api_post(client, org_a.slug, secret, ndjson([copilot_record()]).encode()).json()
    with org_context(org_a.id):
        used = MetricApiKey.objects.get(pk=key.pk).last_used_at
    assert used is not None
    with connection.cursor() as cursor:
        cursor.execute("SET lock_timeout = '2s'")  # without the fix: an error, not a hang
    try:
        with transaction.atomic(using="service"):
            with connections["service"].cursor() as other:
                other.execute(
                    "SELECT 1 FROM metric_api_keys WHERE id = %s FOR UPDATE", [str(key.pk)]
                )
                assert other.fetchone() == (1,)  # the row is held
            status = client.get(payload["status_url"], HTTP_AUTHORIZATION=f"Bearer {secret}")
            assert status.status_code == 200
    finally:
        with connection.cursor() as cursor:
            cursor.execute("RESET lock_timeout")
    status = client.get(payload["status_url"], HTTP_AUTHORIZATION=f"Bearer {secret}")
    with org_context(org_a.id):
        assert MetricApiKey.objects.get(pk=key.pk).last_used_at > used
