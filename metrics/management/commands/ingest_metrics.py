"""Ingest metrics files synchronously, as one run (the same code path as uploads and the API).

    python manage.py ingest_metrics --org acme [--json] [--skip-invalid] FILE [FILE …]

Exit status 0 when the run succeeded (or was partial with --skip-invalid), 1 when it failed."""

from __future__ import annotations

import json
import os

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError

from metrics import services
from metrics.models import MetricIngestionRun
from metrics.parsers import FORMAT_LABELS
from tap.orgs.models import Organization
from tap.tenancy import org_context


class Command(BaseCommand):
    help = "Ingest GitHub Copilot / Claude Code / Tap CSV metrics files into an organisation."
    # Nightly jobs run this often: skip the project-wide system checks (`manage.py check` and
    # deploys run them), which cost seconds of start-up each time.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="organisation slug")
        parser.add_argument("--json", action="store_true", help="print the run summary as JSON")
        parser.add_argument(
            "--skip-invalid",
            action="store_true",
            help="store the good lines when some are bad (the run is 'partial'); without it "
            "one bad line fails the whole run and nothing is stored",
        )
        parser.add_argument("files", nargs="+", metavar="FILE")

    def handle(self, *args, org: str, files: list[str], **options):
        # Commands work across organisations: find the org on the service connection, then
        # do everything as that organisation.
        organization = Organization.objects.using("service").filter(slug=org).first()
        if organization is None:
            raise CommandError(f"No organisation with slug {org!r}.")
        for path in files:
            if not os.path.isfile(path):
                raise CommandError(f"{path}: no such file.")
        stored = [services.file_local(path) for path in files]
        with org_context(organization.pk):
            try:
                run = services.run_create(
                    actor=None,
                    org=organization,
                    files=stored,
                    source=MetricIngestionRun.Source.COMMAND,
                    skip_invalid=options["skip_invalid"],
                    enqueue=False,
                )
            except ValidationError as exc:
                raise CommandError(" ".join(exc.messages)) from exc
        run = services.run_process(run_id=run.pk, org_id=organization.pk)
        if options["json"]:
            self.stdout.write(json.dumps(run.summary(), indent=2))
        else:
            self._report(run)
        if run.status == MetricIngestionRun.Status.FAILED:
            raise SystemExit(1)

    def _report(self, run: MetricIngestionRun) -> None:
        label = FORMAT_LABELS.get(run.detected_format, run.detected_format or "unknown format")
        self.stdout.write(f"run {run.pk}: {run.status} ({label})")
        self.stdout.write(
            f"  lines {run.rows_total}, ingested {run.rows_ingested}, rejected {run.rows_rejected}"
        )
        if run.message:
            self.stdout.write(f"  {run.message}")
        for error in run.errors:
            self.stdout.write(f"  {error['file']}:{error['line']}: {error['reason']}")
        if run.errors_omitted:
            self.stdout.write(f"  … and {run.errors_omitted} more")
