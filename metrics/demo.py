"""Demo metrics for `seed_demo`: a few weeks of generated GitHub Copilot and Claude Code usage
for about twenty developers, an identity map that joins logins to emails and names teams, and
a seat roster — all loaded through the real ingestion path, as a customer's files would be."""

from __future__ import annotations

import datetime as dt
import json
import random
import tempfile
from pathlib import Path

from django.utils import timezone

from metrics import services
from metrics.models import DailyDeveloperMetric, MetricIngestionRun
from tap.tenancy import org_context

PEOPLE = [
    ("ada", "Ada Lovelace", "platform"),
    ("grace", "Grace Hopper", "platform"),
    ("linus", "Linus Berg", "platform"),
    ("margaret", "Margaret Hamilton", "platform"),
    ("ken", "Ken Thompson", "platform"),
    ("barbara", "Barbara Liskov", "payments"),
    ("dennis", "Dennis Ritchie", "payments"),
    ("frances", "Frances Allen", "payments"),
    ("edsger", "Edsger Dijkstra", "payments"),
    ("radia", "Radia Perlman", "payments"),
    ("alan", "Alan Kay", "mobile"),
    ("katherine", "Katherine Johnson", "mobile"),
    ("john", "John Backus", "mobile"),
    ("hedy", "Hedy Lamarr", "mobile"),
    ("donald", "Donald Knuth", "mobile"),
    ("sophie", "Sophie Wilson", "data"),
    ("guido", "Guido Rossum", "data"),
    ("anita", "Anita Borg", "data"),
    ("tim", "Tim Berners", "data"),
    ("jean", "Jean Sammet", "data"),
]
DAYS = 35
# Someone the identity map leaves out: Copilot knows her login, Claude Code her email, and the
# identities page suggests they are one developer.
UNMAPPED = ("mary-keller", "mary.keller@example.com")


def _split(shape: random.Random, total: int, labels: list[str]) -> list[tuple[str, int]]:
    """`total` shared out between one to three of `labels`, the first taking the most."""
    chosen = shape.sample(labels, shape.randint(1, min(3, len(labels))))
    parts, left = [], total
    for label in chosen[:-1]:
        part = shape.randint(left // 2, left)
        parts.append((label, part))
        left -= part
    return [*parts, (chosen[-1], left)]


def _copilot_breakdowns(shape: random.Random, generated: int, accepted: int) -> dict:
    """Per feature, language and model, as the users report gives them (GitHub's field names)."""

    def counts(g: int) -> dict:
        a = min(g, round(accepted * g / generated)) if generated else 0
        return {
            "code_generation_activity_count": g,
            "code_acceptance_activity_count": a,
            "loc_added_sum": a * 3,
            "user_initiated_interaction_count": shape.randint(0, 4),
        }

    features = ["code_completion", "chat_panel_ask_mode", "chat_panel_agent_mode"]
    languages = ["python", "typescript", "go", "sql", "markdown"]
    models = ["gpt-4.1", "claude-sonnet-4.6", "gemini-2.5-pro"]
    return {
        "totals_by_feature": [
            {"feature": f, **counts(g)} for f, g in _split(shape, generated, features)
        ],
        "totals_by_language_feature": [
            {"language": lang, "feature": "code_completion", **counts(g)}
            for lang, g in _split(shape, generated, languages)
        ],
        "totals_by_model_feature": [
            {"model": m, "feature": "chat_panel_agent_mode", **counts(g)}
            for m, g in _split(shape, generated, models)
        ],
        "ai_credits_used": round(shape.random() * 3, 2),
    }


def _claude_models(shape: random.Random, accepted: int) -> list[dict]:
    models = ["claude-sonnet-4-5", "claude-opus-4-1", "claude-haiku-4-5"]
    return [
        {
            "model": model,
            "tokens": {
                "input": share * 1200,
                "output": share * 350,
                "cache_read": share * 9000,
                "cache_creation": share * 800,
            },
            "estimated_cost": {"amount": share * 4 + 1, "currency": "USD"},
        }
        for model, share in _split(shape, max(accepted, 1) * 10, models)
    ]


def _files(folder: Path, end: dt.date) -> list[Path]:
    rng = random.Random(20260401)  # noqa: S311 - demo data, not secrets
    # The breakdowns from a generator of their own: the counters stay what they always were.
    shape = random.Random(20261203)  # noqa: S311
    copilot, claude = [], []
    for index, (login, _name, _team) in enumerate(PEOPLE):
        heavy = rng.random()
        for back in range(DAYS):
            day = end - dt.timedelta(days=back)
            if day.weekday() >= 5 or rng.random() > 0.55 + heavy * 0.4:
                continue
            if index % 5 != 4:  # one in five never uses Copilot
                generated = int(rng.randint(5, 60) * (0.3 + heavy))
                accepted = rng.randint(0, generated)
                copilot.append(
                    {
                        "user_id": 5000 + index,
                        "user_login": login,
                        "day": day.isoformat(),
                        "user_initiated_interaction_count": rng.randint(0, 15),
                        "code_generation_activity_count": generated,
                        "code_acceptance_activity_count": accepted,
                        "loc_added_sum": accepted * rng.randint(1, 5),
                        "totals_by_ide": [
                            {
                                "ide": rng.choice(["vscode", "jetbrains"]),
                                "code_generation_activity_count": generated,
                                "code_acceptance_activity_count": accepted,
                            }
                        ],
                        "used_chat": rng.random() < 0.5,
                        **_copilot_breakdowns(shape, generated, accepted),
                    }
                )
            if index % 3 == 0 and rng.random() < 0.7:  # Claude Code for a third of them
                accepted = int(rng.randint(2, 30) * (0.3 + heavy))
                claude.append(
                    {
                        "date": f"{day.isoformat()}T00:00:00Z",
                        "actor": {"type": "user_actor", "email_address": f"{login}@example.com"},
                        "core_metrics": {
                            "num_sessions": rng.randint(1, 6),
                            "lines_of_code": {"added": accepted * 9, "removed": accepted * 2},
                            "commits_by_claude_code": rng.randint(0, 2),
                            "pull_requests_by_claude_code": rng.randint(0, 1),
                        },
                        "tool_actions": {
                            "edit_tool": {"accepted": accepted, "rejected": rng.randint(0, 4)}
                        },
                        "model_breakdown": _claude_models(shape, accepted),
                    }
                )
    login, email = UNMAPPED
    for back in range(1, DAYS, 3):
        day = (end - dt.timedelta(days=back)).isoformat()
        copilot.append(
            {
                "user_id": 5900,
                "user_login": login,
                "day": day,
                "code_generation_activity_count": 20,
                "code_acceptance_activity_count": 9,
                "loc_added_sum": 30,
            }
        )
        claude.append(
            {
                "date": f"{day}T00:00:00Z",
                "actor": {"type": "user_actor", "email_address": email},
                "core_metrics": {"num_sessions": 2, "lines_of_code": {"added": 60, "removed": 5}},
                "tool_actions": {"edit_tool": {"accepted": 6, "rejected": 1}},
            }
        )
    seats = {
        "total_seats": len(PEOPLE) + 2,
        "seats": [
            {
                "assignee": {"login": login, "id": 5000 + i},
                "created_at": "2026-01-05T09:00:00Z",
                "last_activity_at": None if i % 5 == 4 else f"{end.isoformat()}T12:00:00Z",
            }
            for i, (login, _n, _t) in enumerate(PEOPLE)
        ]
        + [
            {"assignee": {"login": "unused-seat", "id": 6001}, "last_activity_at": None},
            {"assignee": {"login": "left-company", "id": 6002}, "last_activity_at": None},
        ],
    }
    mapping = "github_login,email,name,team\n" + "".join(
        f"{login},{login}@example.com,{name},{team}\n" for login, name, team in PEOPLE
    )
    paths = {
        "copilot-users.ndjson": "".join(json.dumps(r) + "\n" for r in copilot),
        "claude-code.json": json.dumps({"data": claude, "has_more": False, "next_page": None}),
        "copilot-seats.json": json.dumps(seats),
        "identity-map.csv": mapping,
    }
    written = []
    for name, text in paths.items():
        path = folder / name
        path.write_text(text)
        written.append(path)
    return written


def seed(org) -> int:
    """Load the demo files into `org` unless it already has metrics; the runs made."""
    with org_context(org.pk):
        if DailyDeveloperMetric.objects.exists():
            return 0
    end = timezone.localdate() - dt.timedelta(days=1)
    runs = 0
    with tempfile.TemporaryDirectory() as folder:
        for path in _files(Path(folder), end):
            with org_context(org.pk):
                run = services.run_create(
                    actor=None,
                    org=org,
                    files=[services.file_local(str(path))],
                    source=MetricIngestionRun.Source.COMMAND,
                    enqueue=False,
                )
            services.run_process(run_id=run.pk, org_id=org.pk)
            runs += 1
    return runs
