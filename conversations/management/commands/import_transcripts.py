"""Import interviews done elsewhere into a campaign, to analyse them with Tap's own.

    python manage.py import_transcripts --org acme --campaign "Tooling survey" FILE
    python manage.py import_transcripts --template csv     # print a template file

FILE is CSV or JSON, one record per message: participant, sender (participant or
interviewer), text, time (ISO 8601). Format and rules: conversations/analysis/imports.py and
the README. The file is validated first; any error imports nothing and lists the lines."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from conversations.analysis import imports
from conversations.management.commands import _campaign_arg
from tap.tenancy import org_context

TEMPLATES = Path(settings.BASE_DIR) / "templates" / "analysis" / "import"


class Command(BaseCommand):
    help = "Import transcripts (CSV or JSON) into a campaign as completed conversations."

    def add_arguments(self, parser):
        parser.add_argument("--org", help="organisation slug")
        parser.add_argument("--campaign", help="campaign name or id")
        parser.add_argument("--template", choices=["csv", "json"], help="print a template file")
        parser.add_argument("file", nargs="?", metavar="FILE")

    def handle(self, *args, org=None, campaign=None, template=None, file=None, **options):
        if template:
            self.stdout.write((TEMPLATES / f"transcripts-template.{template}").read_text())
            return
        if not (org and campaign and file):
            raise CommandError("Give --org, --campaign and FILE (or --template csv|json).")
        path = Path(file)
        if not path.is_file():
            raise CommandError(f"No file {file!r}.")
        if path.stat().st_size > imports.MAX_BYTES:
            raise CommandError(f"{file} is larger than {imports.MAX_BYTES // 2**20} MB.")
        organization = _campaign_arg.organization(org)
        try:
            rows = imports.parse(path.read_bytes(), filename=path.name)
            with org_context(organization.pk):
                found = _campaign_arg.campaign(campaign)
                report = imports.transcripts_import(
                    actor=None, campaign=found, rows=rows, source=f"import_transcripts {path.name}"
                )
        except imports.TranscriptImportError as exc:
            raise CommandError(
                f"Nothing was imported from {path.name}:\n  " + "\n  ".join(exc.messages)
            ) from exc
        self.stdout.write(
            f"Imported {report.conversations} conversations ({report.messages} messages) "
            f"into {found.name!r}. Run analyze_campaign or use Refresh to include them."
        )
