"""Metrics background work: process an ingestion run on the `ingest` queue; the sweeper."""

from __future__ import annotations

from celery import shared_task

from metrics import services
from tap.outbox import outbox_task
from tap.tenancy import current_org_id


@outbox_task(queue="ingest", name=services.INGEST_TASK, atomic=False)
def process_run(*, run_id: str) -> None:
    # The run opens its own transactions: a claim that commits at once (so the page shows
    # "processing"), then one transaction for all of the run's data.
    services.run_process(run_id=run_id, org_id=current_org_id())


@shared_task(name="metrics.sweep", ignore_result=True)
def sweep() -> int:
    return services.runs_sweep()
