"""The sweeper fails runs whose worker died mid-way — and leaves running ones alone."""

from datetime import timedelta

import pytest
from django.utils import timezone

from metrics import services
from metrics.models import MetricIngestionRun
from tap import outbox
from tap.tenancy import org_context

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])


def test_only_runs_stuck_past_twice_the_ingest_lease_are_failed(org_a, tmp_path):
    lease = outbox.lease_for("ingest")
    now = timezone.now()
    uploads = {}
    for name in ("running.ndjson", "stuck.ndjson"):
        uploads[name] = tmp_path / name
        uploads[name].write_text("{}\n")
    with org_context(org_a.id):
        running, stuck = (
            MetricIngestionRun.objects.create(
                organization=org_a,
                file_name=name,
                sha256=name,  # two files: one queued run each may be processing
                status="processing",
                started_at=started,
                files=[{"name": name, "path": str(uploads[name]), "size": 3, "sha256": "x"}],
            )
            for name, started in (
                ("running.ndjson", now - lease),
                ("stuck.ndjson", now - 3 * lease),
            )
        )
    assert services.runs_sweep() == 1
    # The failed run's upload is deleted; the running one still reads its own.
    assert not uploads["stuck.ndjson"].exists()
    assert uploads["running.ndjson"].exists()
    with org_context(org_a.id):
        running.refresh_from_db()
        stuck.refresh_from_db()
    assert running.status == "processing"
    assert stuck.status == "failed"
    assert "stopped while processing" in stuck.message
    assert lease > timedelta(minutes=10)  # an ingestion may run that long
