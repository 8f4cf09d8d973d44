"""Metrics ingestion and dashboards at scale: a generated Copilot per-user NDJSON (developers x
days, realistic fields and breakdown arrays) and a Claude Code records file are ingested with
`manage.py ingest_metrics` (the product's one code path) — rows/s and peak memory (max RSS of
the process) — next to a *floor* measured in the same run on the same file: a minimal script
that reads it with the same JSON parser (`json.loads` per line) and COPYs the core columns
into an unindexed temporary table. Then the dashboards over those rows: median render time
and SQL queries per page.

Sizes (environment variables; defaults are the issue's): TAP_BENCH_METRICS_DEVELOPERS=5000,
TAP_BENCH_METRICS_DAYS=200 (→ 1,000,000 Copilot rows), TAP_BENCH_METRICS_CLAUDE=200000.
The tables, the rollups too, are VACUUMed and ANALYZEd after loading, as autovacuum would
after a load this size (index-only scans need the visibility map, plans need statistics).
The data lives in a throw-away organisation of the dev database, deleted at the end (its
deletion time is reported too).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.lib import ROOT, django_setup

ORDER = 200
ROUNDS = 7
IDES = ["vscode", "jetbrains", "visualstudio", "neovim"]
FEATURES = ["code_completion", "chat_panel_ask_mode", "chat_panel_agent_mode", "copilot_cli"]
LANGUAGES = ["python", "typescript", "go", "java", "markdown", "rust"]
MODELS = ["gpt-4.1", "claude-sonnet-4.6", "gemini-2.5-pro"]

FLOOR_SCRIPT = r"""
import json, os, sys, time, psycopg
params = json.loads(os.environ["BENCH_PG"])
path = sys.argv[1]
started = time.perf_counter()
rows = 0
with psycopg.connect(**params) as conn, conn.cursor() as cur:
    cur.execute("CREATE TEMP TABLE floor (login text, day date, s int, a int, c int, n int)")
    with open(path, encoding="utf-8") as f, cur.copy("COPY floor FROM STDIN") as copy:
        buf = []
        for line in f:
            r = json.loads(line)
            if "data" in r:
                continue
            if "user_login" in r:
                cli = r.get("totals_by_cli") or {}
                buf.append(f"{r['user_login']}\t{r['day']}\t{r['code_generation_activity_count']}\t"
                           f"{r['code_acceptance_activity_count']}\t{r['loc_added_sum']}\t"
                           f"{cli.get('session_count', 0)}\n")
            else:
                core = r["core_metrics"]
                acts = r["tool_actions"].values()
                buf.append(f"{r['actor']['email_address']}\t{r['date'][:10]}\t"
                           f"{sum(x['accepted'] + x['rejected'] for x in acts)}\t"
                           f"{sum(x['accepted'] for x in acts)}\t{core['lines_of_code']['added']}\t"
                           f"{core['num_sessions']}\n")
            rows += 1
            if len(buf) >= 5000:
                copy.write("".join(buf)); buf = []
        copy.write("".join(buf))
    conn.commit()
print(json.dumps({"rows": rows, "seconds": time.perf_counter() - started}))
"""


def _copilot_line(rng, login, user_id, day: str) -> str:
    gen = rng.randint(0, 120)
    acc = rng.randint(0, gen)
    added = acc * rng.randint(1, 6)

    def counts():
        g = rng.randint(0, 40)
        a = rng.randint(0, g)
        return {
            "user_initiated_interaction_count": rng.randint(0, 10),
            "code_generation_activity_count": g,
            "code_acceptance_activity_count": a,
            "loc_suggested_to_add_sum": a * 3,
            "loc_suggested_to_delete_sum": rng.randint(0, 5),
            "loc_added_sum": a * 2,
            "loc_deleted_sum": rng.randint(0, 4),
        }

    record = {
        "user_id": user_id,
        "user_login": login,
        "day": day,
        "organization_id": "100000001",
        "enterprise_id": "200001",
        "user_initiated_interaction_count": rng.randint(0, 30),
        "code_generation_activity_count": gen,
        "code_acceptance_activity_count": acc,
        "loc_suggested_to_add_sum": added + rng.randint(0, 50),
        "loc_suggested_to_delete_sum": rng.randint(0, 20),
        "loc_added_sum": added,
        "loc_deleted_sum": rng.randint(0, 20),
        "totals_by_ide": [
            {"ide": ide, **counts(), "last_known_ide_version": {"ide_version": "1.99.0"}}
            for ide in rng.sample(IDES, rng.randint(1, 2))
        ],
        "totals_by_feature": [{"feature": f, **counts()} for f in rng.sample(FEATURES, 2)],
        "totals_by_language_feature": [
            {"language": lang, "feature": "code_completion", **counts()}
            for lang in rng.sample(LANGUAGES, 3)
        ],
        "totals_by_language_model": [
            {"language": lang, "model": rng.choice(MODELS), **counts()}
            for lang in rng.sample(LANGUAGES, 2)
        ],
        "totals_by_model_feature": [
            {"model": m, "feature": "chat_panel_agent_mode", **counts()}
            for m in rng.sample(MODELS, 2)
        ],
        "used_agent": rng.random() < 0.3,
        "used_chat": rng.random() < 0.6,
        "used_cli": rng.random() < 0.2,
        "ai_credits_used": round(rng.random() * 5, 2),
    }
    if record["used_cli"]:
        record["totals_by_cli"] = {
            "session_count": rng.randint(1, 9),
            "request_count": rng.randint(1, 200),
            "prompt_count": rng.randint(1, 40),
            "token_usage": {"output_tokens_sum": 1000, "prompt_tokens_sum": 90000},
        }
    return json.dumps(record, separators=(",", ":")) + "\n"


def generate_copilot(path: Path, developers: int, days: int, start: dt.date) -> int:
    rng = random.Random(42)
    # Pre-render a pool of records per developer-day shape, then vary the identity and day:
    # generating a million fresh JSON documents would dominate the benchmark's own time.
    pool = [_copilot_line(rng, "LOGIN", 1, "DAY") for _ in range(500)]
    rows = 0
    with open(path, "w", encoding="utf-8") as out:
        for d in range(days):
            day = (start + dt.timedelta(days=d)).isoformat()
            for i in range(developers):
                line = pool[(i * 7 + d) % len(pool)]
                out.write(
                    line.replace('"LOGIN"', f'"dev{i:05d}"', 1)
                    .replace('"user_id":1,', f'"user_id":{10_000 + i},', 1)
                    .replace('"DAY"', f'"{day}"', 1)
                )
                rows += 1
    return rows


def generate_claude(path: Path, records: int, start: dt.date) -> int:
    rng = random.Random(7)
    users = max(1, records // 200)
    rows = 0
    with open(path, "w", encoding="utf-8") as out:
        for d in range(records // users + 1):
            day = (start + dt.timedelta(days=d)).isoformat() + "T00:00:00Z"
            for i in range(users):
                if rows >= records:
                    return rows
                record = {
                    "date": day,
                    "actor": {"type": "user_actor", "email_address": f"dev{i:05d}@bench.example"},
                    "organization_id": "12345678-1234-5678-1234-567812345678",
                    "customer_type": "api",
                    "terminal_type": "vscode",
                    "is_remote": False,
                    "core_metrics": {
                        "num_sessions": rng.randint(0, 9),
                        "lines_of_code": {"added": rng.randint(0, 500), "removed": 10},
                        "commits_by_claude_code": rng.randint(0, 3),
                        "pull_requests_by_claude_code": rng.randint(0, 1),
                    },
                    "tool_actions": {
                        "edit_tool": {"accepted": rng.randint(0, 30), "rejected": 2},
                        "write_tool": {"accepted": rng.randint(0, 10), "rejected": 0},
                    },
                    "model_breakdown": [
                        {
                            "model": "claude-sonnet-5",
                            "tokens": {
                                "input": 1000,
                                "output": 400,
                                "cache_read": 50,
                                "cache_creation": 10,
                            },
                            "estimated_cost": {"amount": 42, "currency": "USD"},
                        }
                    ],
                }
                out.write(json.dumps(record, separators=(",", ":")) + "\n")
                rows += 1
    return rows


# Runs a command as its child and prints the child's own peak memory. Measured from the bench
# process directly, Linux would report at least the bench's own size: a process's peak RSS
# survives fork and exec, and the bench holds the generated data's bookkeeping.
LAUNCHER = r"""
import os, sys
pid = os.fork()
if pid == 0:
    os.execv(sys.argv[1], sys.argv[1:])
_pid, status, usage = os.wait4(pid, 0)
sys.stderr.write(f"\nTAP_PEAK_RSS_KB={usage.ru_maxrss}\n")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def _measure(cmd: list[str], env: dict) -> tuple[float, float, str]:
    """(seconds, peak RSS in MB, stdout) of one child process."""
    started = time.perf_counter()
    with tempfile.TemporaryFile() as out:
        process = subprocess.run(
            [sys.executable, "-c", LAUNCHER, *cmd],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.PIPE,
            check=False,
        )
        seconds = time.perf_counter() - started
        err = process.stderr.decode()
        out.seek(0)
        stdout = out.read().decode()
    if process.returncode != 0:
        raise RuntimeError(f"{cmd[:4]} failed ({process.returncode}): {err[-2000:]}")
    peak_kb = int(err.rsplit("TAP_PEAK_RSS_KB=", 1)[1].split()[0])
    return seconds, peak_kb / 1024, stdout


def timed_get(client, url: str, rounds: int = ROUNDS) -> dict:
    from django.db import connections

    client.get(url)  # warm caches and templates
    queries = []

    def count(execute, sql, params, many, context):
        queries.append(sql)
        return execute(sql, params, many, context)

    with connections["default"].execute_wrapper(count):
        response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    times = []
    for _ in range(rounds):
        started = time.perf_counter()
        client.get(url)
        times.append((time.perf_counter() - started) * 1000)
    return {"median_ms": round(statistics.median(times), 1), "queries": len(queries)}


def _progress(name: str, value) -> None:
    """Each figure as it comes (stderr), so a long run that fails late still tells something."""
    print(f"[metrics] {name}: {json.dumps(value)}", file=sys.stderr, flush=True)


def run() -> dict:
    django_setup()
    from django.test import Client

    from bench.lib import pg_params
    from metrics.models import DeveloperIdentity
    from tap.orgs import services as org_services
    from tap.orgs.models import OrganizationMember, Role, User
    from tap.tenancy import org_context

    developers = int(os.environ.get("TAP_BENCH_METRICS_DEVELOPERS", 5000))
    days = int(os.environ.get("TAP_BENCH_METRICS_DAYS", 200))
    claude = int(os.environ.get("TAP_BENCH_METRICS_CLAUDE", 200_000))
    start = dt.date(2026, 1, 1)
    suffix = uuid.uuid4().hex[:8]
    user = User.objects.create_user(f"bench-{suffix}@bench.example", None, name="Bench")
    org = org_services.org_create(actor=user, name=f"bench-metrics-{suffix}")
    figures: dict = {"sizes": {"developers": developers, "days": days}}
    work = Path(tempfile.mkdtemp(prefix="tap-bench-metrics-"))
    env = dict(os.environ)
    env["BENCH_PG"] = json.dumps({k: v for k, v in pg_params("default").items()})
    try:
        copilot = work / "copilot-users.ndjson"
        claude_path = work / "claude-code.ndjson"
        started = time.perf_counter()
        copilot_rows = generate_copilot(copilot, developers, days, start)
        claude_rows = generate_claude(claude_path, claude, start)
        figures["generate_s"] = round(time.perf_counter() - started, 1)
        figures["sizes"].update(
            copilot_rows=copilot_rows,
            copilot_mb=round(copilot.stat().st_size / 2**20),
            claude_rows=claude_rows,
        )
        manage = [sys.executable, "manage.py", "ingest_metrics", "--org", org.slug, "--json"]
        for name, path, rows in (
            ("copilot", copilot, copilot_rows),
            ("claude_code", claude_path, claude_rows),
        ):
            floor_s, floor_mb, floor_out = _measure(
                [sys.executable, "-c", FLOOR_SCRIPT, str(path)], env
            )
            assert json.loads(floor_out)["rows"] == rows
            ingest_s, ingest_mb, out = _measure([*manage, str(path)], env)
            summary = json.loads(out)
            assert summary["status"] == "succeeded", summary
            assert summary["rows_ingested"] == rows, summary
            figures[f"ingest_{name}"] = figure = {
                "rows": rows,
                "rows_per_s": round(rows / ingest_s),
                "seconds": round(ingest_s, 1),
                "peak_mb": round(ingest_mb),
                "floor_rows_per_s": round(rows / floor_s),
                "floor_peak_mb": round(floor_mb),
                "ratio_to_floor": round(floor_s / ingest_s, 2),
            }
            _progress(f"ingest_{name}", figure)
        # The same file again: nothing changes, and the run says so.
        again_s, _mb, out = _measure([*manage, str(claude_path)], env)
        summary = json.loads(out)
        figures["reupload_claude_unchanged"] = {
            "seconds": round(again_s, 1),
            "rows_unchanged": summary["rows_unchanged"],
            "rows_new": summary["rows_new"],
        }

        # As autovacuum would after a load this size.
        from bench.lib import pg_connect

        with pg_connect("owner", autocommit=True) as conn:
            conn.execute(
                "VACUUM ANALYZE daily_developer_metrics, developer_identities, "
                "daily_tool_rollups, weekly_developer_tool_rollups, weekly_developer_rollups"
            )

        client = Client(HTTP_HOST="localhost")
        client.force_login(user)
        base = f"/o/{org.slug}/metrics/"
        end = (start + dt.timedelta(days=days - 1)).isoformat()
        figures["trivial_page"] = timed_get(client, "/ping")
        pages = {
            "overview_28_days": base,
            "overview_all_days": f"{base}?start={start.isoformat()}&end={end}",
            "overview_copilot_28_days": f"{base}?tool=copilot",
            "cohorts_tier_28_days": f"{base}cohorts/?by=tier&tool=copilot",
            "cohorts_adoption_28_days": f"{base}cohorts/?by=adoption",
            "seats": f"{base}seats/",
            "freshness": f"{base}freshness/",
            "developers_28_days": f"{base}developers/",
            "developers_all_days": f"{base}developers/?start={start.isoformat()}&end={end}",
        }
        # One developer's page over the whole range: their daily rows, and each tool's
        # breakdowns summed from those rows' extras.
        with org_context(org.pk):
            someone = DeveloperIdentity.objects.get(github_login="dev00000")
        pages["developer_all_days"] = (
            f"{base}developers/{someone.pk}/?start={start.isoformat()}&end={end}"
        )
        for name, url in pages.items():
            figures[name] = timed_get(client, url)
            _progress(name, figures[name])
        # A member's pages are another code path: whole weeks, (week, tool) cells of at least
        # five developers, complementary suppression in the cohorts.
        member = User.objects.create_user(f"bench-member-{suffix}@bench.example", None)
        with org_context(org.pk):
            OrganizationMember.objects.create(organization=org, user=member, role=Role.MEMBER)
        member_client = Client(HTTP_HOST="localhost")
        member_client.force_login(member)
        for name in (
            "overview_28_days",
            "overview_all_days",
            "cohorts_tier_28_days",
            "cohorts_adoption_28_days",
        ):
            figures[f"member_{name}"] = timed_get(member_client, pages[name])
            _progress(f"member_{name}", figures[f"member_{name}"])
        figures["daily_rows"] = copilot_rows + claude_rows
        figures["max_rss_bench_process_mb"] = round(
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        )
        return figures
    finally:
        for path in work.iterdir():
            path.unlink()
        work.rmdir()
        started = time.perf_counter()
        org_services.org_delete(actor=user, org=org)
        figures["delete_org_s"] = round(time.perf_counter() - started, 1)
        User.objects.using("service").filter(email=f"bench-member-{suffix}@bench.example").delete()
        user.delete(using="service")
