"""Analyse a campaign now, with the same service as the page and the queue, and print it.

    python manage.py analyze_campaign --org acme --campaign "Tooling survey" [--json]

A fresh stored analysis is printed as is (no recomputation, no AI call); otherwise only the
conversations that changed are extracted, then the campaign is synthesised. With --json the
stored fields are printed as JSON."""

from __future__ import annotations

import json

from django.core.management.base import BaseCommand, CommandError
from django.core.serializers.json import DjangoJSONEncoder

from conversations.analysis.service import campaign_analyze
from conversations.management.commands import _campaign_arg
from conversations.models import CampaignAnalysis
from tap.ai import AIUnavailable
from tap.tenancy import org_context, org_scope

FIELDS = (
    "status",
    "engine",
    "engine_version",
    "model",
    "input_hash",
    "options",
    "conversation_count",
    "unanalysed",
    "generated_at",
    "tokens_in",
    "tokens_out",
    "cache_read_tokens",
    "cost_usd",
    "error",
    "executive_summary",
    "key_findings",
    "themes",
    "groupings",
    "sentiment_distribution",
)


class Command(BaseCommand):
    help = "Analyse a campaign synchronously and print the analysis."

    def add_arguments(self, parser):
        parser.add_argument("--org", required=True, help="organisation slug")
        parser.add_argument("--campaign", required=True, help="campaign name or id")
        parser.add_argument("--json", action="store_true", help="print the stored fields as JSON")
        parser.add_argument(
            "--completed-only",
            action="store_true",
            help="analyse completed conversations only (default: in-progress ones too)",
        )
        parser.add_argument(
            "--force", action="store_true", help="recompute the synthesis even when fresh"
        )

    def handle(self, *args, org, campaign, **options):
        organization = _campaign_arg.organization(org)
        with org_scope(organization.pk):
            with org_context(organization.pk):
                found = _campaign_arg.campaign(campaign)
            try:
                analysis = campaign_analyze(
                    actor=None,
                    campaign=found,
                    include_in_progress=not options["completed_only"],
                    force=options["force"],
                    run_now=True,
                )
            except AIUnavailable as exc:
                raise CommandError(f"The analysis failed: {exc}") from exc
            with org_context(organization.pk):
                analysis = CampaignAnalysis.objects.get(pk=analysis.pk)
        if analysis.status != "ready":
            raise CommandError(f"The analysis failed: {analysis.error or analysis.status}")
        if options["json"]:
            data = {"campaign": str(found.pk), **{f: getattr(analysis, f) for f in FIELDS}}
            self.stdout.write(json.dumps(data, cls=DjangoJSONEncoder, indent=2, ensure_ascii=False))
            return
        self.stdout.write(self._text(found, analysis))

    @staticmethod
    def _text(campaign, analysis) -> str:
        engine = "offline analysis" if analysis.engine == "local" else analysis.model
        out = [
            f"Analysis of {campaign.name}: {analysis.conversation_count} conversations, "
            f"{engine}, generated {analysis.generated_at:%Y-%m-%d %H:%M} UTC",
        ]
        if analysis.unanalysed:
            numbers = ", ".join(str(c["number"]) for c in analysis.unanalysed)
            out.append(f"Left out (the model could not analyse them): participants {numbers}")
        out += [
            "",
            "Executive summary",
            analysis.executive_summary,
            "",
            "Key findings",
        ]
        for n, finding in enumerate(analysis.key_findings, 1):
            out.append(f"{n}. {finding['title']} — {finding.get('detail', '')}")
            out += [f"     “{q['text']}” (message {q['message_id']})" for q in finding["quotes"]]
        out += ["", "Themes"]
        out += [f"  {t['count']:>6}  {t['share']:>5}%  {t['label']}" for t in analysis.themes]
        counts = analysis.sentiment_distribution.get("counts", {})
        out += [
            "",
            "Sentiment: " + ", ".join(f"{k} {v}" for k, v in counts.items()),
        ]
        if analysis.engine != "local":
            out.append(
                f"Tokens: {analysis.tokens_in} in, {analysis.tokens_out} out, "
                f"{analysis.cache_read_tokens} cached; about ${analysis.cost_usd}"
            )
        return "\n".join(out)
