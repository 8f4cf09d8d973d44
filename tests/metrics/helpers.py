"""Helpers for metrics tests: files from text, runs through the real service."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from metrics import services
from metrics.models import DailyDeveloperMetric, MetricIngestionRun
from tap.tenancy import org_context

# Copied into the repository (a clean clone has nothing beside it); see samples/README.md.
SAMPLES = Path(__file__).resolve().parent / "samples"
# Tap's own CSV format (metrics-formats.md §5): this header, then one row per developer-day.
TAP_CSV = "date,tool,github_login,email,suggestions,acceptances,completions,sessions\n"


def write(tmp_path, name: str, content, *, gz: bool = False, bom: bool = False, crlf=False):
    if isinstance(content, list | dict):
        content = json.dumps(content)
    if crlf:
        content = content.replace("\n", "\r\n")
    data = ("\ufeff" if bom else "") + content
    raw = data.encode()
    if gz:
        raw = gzip.compress(raw)
    path = tmp_path / name
    path.write_bytes(raw)
    return path


def ndjson(records: list[dict]) -> str:
    return "".join(json.dumps(r) + "\n" for r in records)


def ingest(org, *paths, skip_invalid=False, actor=None) -> MetricIngestionRun:
    files = [services.file_local(str(p)) for p in paths]
    with org_context(org.id):
        run = services.run_create(
            actor=actor,
            org=org,
            files=files,
            source=MetricIngestionRun.Source.COMMAND,
            skip_invalid=skip_invalid,
            enqueue=False,
        )
    return services.run_process(run_id=run.pk, org_id=org.id)


def rows(org, **filters) -> list[DailyDeveloperMetric]:
    with org_context(org.id):
        return list(
            DailyDeveloperMetric.objects.filter(**filters)
            .select_related("developer_identity")
            .order_by("date", "tool", "developer_identity__github_login")
        )


def copilot_record(login="mona", day="2026-04-01", user_id=None, **counts) -> dict:
    record = {
        "user_login": login,
        "user_id": user_id or (abs(hash(login)) % 100000 + 1),
        "day": day,
        "code_generation_activity_count": 10,
        "code_acceptance_activity_count": 4,
        "loc_added_sum": 30,
        "user_initiated_interaction_count": 2,
        "totals_by_ide": [{"ide": "vscode", "code_generation_activity_count": 10}],
    }
    record.update(counts)
    return record


def claude_record(email="dev@x.example", date="2026-04-01T00:00:00Z", **core) -> dict:
    return {
        "date": date,
        "actor": {"type": "user_actor", "email_address": email},
        "core_metrics": {
            "num_sessions": core.get("sessions", 3),
            "lines_of_code": {"added": core.get("added", 100), "removed": 5},
            "commits_by_claude_code": 1,
            "pull_requests_by_claude_code": 0,
        },
        "tool_actions": {"edit_tool": {"accepted": core.get("accepted", 7), "rejected": 1}},
        "model_breakdown": [],
        "is_remote": core.get("remote", False),
    }
