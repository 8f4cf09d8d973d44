"""Cost of row-level security: the same tenant queries with and without RLS policies.

Every tenant table carries a policy `organization_id = (SELECT current_setting('tap.org_id'))`
(tap/rls.py), and the app role is subject to it; the service role has BYPASSRLS. Both run
the SAME SQL here — each query already filters on `organization_id = X` explicitly, as the
ORM's TenantManager does — in the same kind of transaction (`set_config('tap.org_id', X,
true)`, five queries, COMMIT), on separate connections to the same database. The only
difference is whether PostgreSQL adds the policy, so the ratio of the two medians is what
RLS costs the app on its typical reads. The design target is under 10 % overhead.

Data: a throw-away set of organisations (slug prefix `bench-rls-`; default 20 organisations x
2,000 messages, with campaigns, participants and conversations) inserted with COPY through
the service connection, vacuumed and analysed (through the owner connection, as autovacuum
would in steady state), and deleted again at the end — also when the benchmark fails.

Queries (per organisation, rotating over organisations, conversations and campaigns):
count the org's messages; the last 50 messages of a conversation; a campaign's conversations
with message counts (join); bot usage per day over two weeks (filtered aggregate); the
campaign list with participant counts (left join). Both roles' results are compared first:
if they differ, or if the app role can see other organisations' rows, the benchmark fails
rather than report a meaningless figure. The two variants alternate within each round (and
swap who goes first every round) so that drift on a shared machine hits both alike.

Reading the figures: with the explicit filter in place, PostgreSQL (16) folds the policy into
a one-time check (`$0 = X`) on an extra Result node, so both roles' plans use the same
indexes; what RLS adds is that node's per-row pass-through and a little planning per
statement, which weighs most on queries that stream many rows cheaply (count_messages). A
ratio far above that means a plan changed: compare `EXPLAIN` as the two roles.

Connections use Django's defaults (client-side binding, no server-side prepared statements).
`BENCH_RLS_ORGS` and `BENCH_RLS_MESSAGES_PER_ORG` change the data size.
"""

from __future__ import annotations

import gc
import os
import random
import statistics
import time
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import psycopg
from psycopg.pq import TransactionStatus

from bench.lib import pg_connect

ORGS = int(os.environ.get("BENCH_RLS_ORGS", "20"))
MESSAGES_PER_ORG = int(os.environ.get("BENCH_RLS_MESSAGES_PER_ORG", "2000"))
CAMPAIGNS_PER_ORG = 2
CONVERSATIONS_PER_CAMPAIGN = 25
MAX_ROUNDS = 500
MAX_SECONDS = 12.0
SLUG_PREFIX = "bench-rls-"
# Bench organisations older than this are leftovers of a run that was killed: removed at start.
STALE_AFTER = timedelta(minutes=15)
TARGET_OVERHEAD_PCT = 10

SET_CONTEXT = "SELECT set_config('tap.org_id', %s, true), set_config('tap.user_id', '', true)"

QUERIES = {
    "count_messages": "SELECT count(*) FROM messages WHERE organization_id = %(org)s",
    "last_50_messages": """
        SELECT id, sender, body, created_at FROM messages
        WHERE organization_id = %(org)s AND conversation_id = %(conversation)s
        ORDER BY created_at DESC, id DESC
        LIMIT 50""",
    "campaign_conversations": """
        SELECT c.id, c.status, count(m.id) AS messages, max(m.created_at) AS last_message
        FROM conversations c
        JOIN messages m ON m.organization_id = c.organization_id AND m.conversation_id = c.id
        WHERE c.organization_id = %(org)s AND c.campaign_id = %(campaign)s
        GROUP BY c.id, c.status
        ORDER BY last_message DESC, c.id
        LIMIT 20""",
    "bot_usage_by_day": """
        SELECT date_trunc('day', created_at) AS day, count(*), sum(tokens_in),
               sum(tokens_out), round(avg(latency_ms)) AS latency_ms
        FROM messages
        WHERE organization_id = %(org)s AND sender = 'bot' AND created_at >= %(since)s
        GROUP BY day
        ORDER BY day""",
    "campaign_list": """
        SELECT cp.id, cp.name, cp.status, count(p.id) AS participants
        FROM campaigns cp
        LEFT JOIN participants p
            ON p.organization_id = cp.organization_id AND p.campaign_id = cp.id
        WHERE cp.organization_id = %(org)s
        GROUP BY cp.id
        ORDER BY cp.created_at DESC, cp.id""",
}

# Children before parents: the organisation foreign keys have no ON DELETE CASCADE in SQL
# (Django emulates it), so every table that may hold a bench org's rows is emptied first.
CLEANUP_TABLES = [
    "messages",
    "campaign_analysis",
    "conversations",
    "participants",
    "campaigns",
    "audit_events",
    "organization_invitations",
    "organization_members",
]
DATA_TABLES = ["organizations", "campaigns", "participants", "conversations", "messages"]

SAMPLE_TEXT = (
    "the onboarding was slow because the docs assumed we knew the old setup and nobody "
    "told us where the staging keys live so we asked around for two days before it worked "
    "pricing feels fair but the dashboard hides the export button under settings"
)
WORDS = SAMPLE_TEXT.split()


@dataclass
class Org:
    id: uuid.UUID
    campaigns: list[uuid.UUID] = field(default_factory=list)
    conversations: list[uuid.UUID] = field(default_factory=list)


def run() -> dict:
    app = pg_connect("default")
    service = pg_connect("service")
    run_slug = f"{SLUG_PREFIX}{uuid.uuid4().hex[:8]}-"
    try:
        stale = remove_stale(service)
        started = time.monotonic()
        orgs, now = create_dataset(service, run_slug)
        analysed = vacuum_analyse()
        setup_s = time.monotonic() - started
        check_isolation(app, service, orgs)
        figures = measure(app, service, orgs, now)
    finally:
        try:
            delete_orgs(service, f"{run_slug}%")
        finally:
            app.close()
            service.close()
    return {
        "orgs": len(orgs),
        "messages": sum(len(org.conversations) for org in orgs) * messages_per_conversation(),
        "setup_s": round(setup_s, 2),
        "vacuum_analysed": analysed,
        "stale_orgs_removed": stale,
        **figures,
    }


# --- data -----------------------------------------------------------------------------------


def messages_per_conversation() -> int:
    return max(1, MESSAGES_PER_ORG // (CAMPAIGNS_PER_ORG * CONVERSATIONS_PER_CAMPAIGN))


def create_dataset(conn, run_slug: str) -> tuple[list[Org], datetime]:
    """Insert the bench organisations and their rows with COPY, in one transaction."""
    rng = random.Random(20261123)
    now = datetime.now(UTC)
    orgs: list[Org] = []
    rows: dict[str, list[dict]] = {table: [] for table in DATA_TABLES}
    per_conversation = messages_per_conversation()
    for i in range(ORGS):
        org = Org(uuid.uuid4())
        orgs.append(org)
        tenant = {"organization_id": org.id}
        rows["organizations"].append(
            {
                **stamps(now),
                "id": org.id,
                "name": f"Bench RLS {i:02d}",
                "slug": f"{run_slug}{i:02d}",
            }
        )
        for c in range(CAMPAIGNS_PER_ORG):
            campaign = uuid.uuid4()
            org.campaigns.append(campaign)
            rows["campaigns"].append(
                {
                    **tenant,
                    **stamps(now - timedelta(days=40 + c)),
                    "id": campaign,
                    "name": f"Campaign {c}",
                    "mission": "Find out what slows teams down.",
                    "mission_summary": "",
                    "opening_question": "What slowed you down last week?",
                    "status": "active",
                    "settings": "{}",
                }
            )
            for p in range(CONVERSATIONS_PER_CAMPAIGN):
                participant, conversation = uuid.uuid4(), uuid.uuid4()
                org.conversations.append(conversation)
                begun = now - timedelta(days=rng.uniform(0, 30))
                rows["participants"].append(
                    {
                        **tenant,
                        **stamps(begun),
                        "id": participant,
                        "campaign_id": campaign,
                        "email": f"p{p}@c{c}.example.com",
                        "name": f"Participant {p}",
                        "status": "in_progress",
                        "invited_at": begun,
                    }
                )
                at = begun
                for n in range(per_conversation):
                    at += timedelta(seconds=rng.uniform(5, 600))
                    bot = n % 2 == 0
                    rows["messages"].append(
                        {
                            **tenant,
                            **stamps(at),
                            "id": uuid.uuid4(),
                            "conversation_id": conversation,
                            "sender": "bot" if bot else "participant",
                            "body": " ".join(rng.choices(WORDS, k=rng.randint(8, 40))),
                            "client_key": f"k{n}",
                            # The opening question is the bot's turn 0; then answer and
                            # reply share a turn (one of each per turn, a unique key).
                            "turn": (n + 1) // 2,
                            "model": "claude-sonnet-4-5" if bot else "",
                            "tokens_in": rng.randint(200, 3000) if bot else None,
                            "tokens_out": rng.randint(20, 400) if bot else None,
                            "latency_ms": rng.randint(300, 9000) if bot else None,
                        }
                    )
                rows["conversations"].append(
                    {
                        **tenant,
                        **stamps(begun),
                        "updated_at": at,
                        "id": conversation,
                        "campaign_id": campaign,
                        "participant_id": participant,
                        "status": "active",
                        "last_activity_at": at,
                        "end_reason": "",
                    }
                )
    with conn.cursor() as cursor:
        for table in DATA_TABLES:
            defaults = model_defaults(table)
            rows[table] = [{**defaults, **row} for row in rows[table]]
            columns = list(rows[table][0])
            with cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for row in rows[table]:
                    copy.write_row([row[column] for column in columns])
    conn.commit()  # the deferred composite foreign keys are checked here
    return orgs, now


def model_defaults(table: str) -> dict:
    """Python-side defaults of the table's model for the columns a row leaves out, so the
    dataset keeps loading as models grow columns (defaults live in Django, not in SQL)."""
    from django.apps import apps
    from django.db.models import JSONField
    from psycopg.types.json import Jsonb

    (model,) = [m for m in apps.get_models() if m._meta.db_table == table]
    defaults = {}
    for f in model._meta.concrete_fields:
        value = f.get_default()  # "" for blank text fields, the declared default otherwise
        if value is not None:
            defaults[f.column] = Jsonb(value) if isinstance(f, JSONField) else value
    return defaults


def stamps(at: datetime) -> dict:
    return {"created_at": at, "updated_at": at}


def vacuum_analyse() -> bool:
    """VACUUM ANALYZE the tables as their owner (planner statistics, visibility map), as
    autovacuum would have done in steady state. False when the owner role is not available
    (e.g. DATABASE_OWNER_URL unset); the benchmark then runs on whatever statistics exist."""
    try:
        owner = pg_connect("owner", autocommit=True)
    except psycopg.Error:
        return False
    with owner:
        row = owner.execute(
            "SELECT tableowner = current_user FROM pg_tables WHERE tablename = 'messages'"
        ).fetchone()
        if not row or not row[0]:
            return False
        owner.execute(f"VACUUM (ANALYZE) {', '.join(DATA_TABLES)}")
    return True


def remove_stale(conn) -> int:
    """Delete bench organisations left behind by a killed run (older than STALE_AFTER)."""
    return delete_orgs(conn, f"{SLUG_PREFIX}%", older_than=datetime.now(UTC) - STALE_AFTER)


def delete_orgs(conn, slug_like: str, *, older_than: datetime | None = None) -> int:
    """Delete bench organisations (slug LIKE `slug_like`) and all their rows; returns how many."""
    if conn.info.transaction_status != TransactionStatus.IDLE:  # failed or open: start clean
        conn.rollback()
    query = "SELECT id FROM organizations WHERE slug LIKE %s"
    params: list = [slug_like]
    if older_than is not None:
        query += " AND created_at < %s"
        params.append(older_than)
    ids = [row[0] for row in conn.execute(query, params).fetchall()]
    if ids:
        for table in CLEANUP_TABLES:
            conn.execute(f"DELETE FROM {table} WHERE organization_id = ANY(%s)", [ids])
        conn.execute("DELETE FROM organizations WHERE id = ANY(%s)", [ids])
    conn.commit()
    return len(ids)


# --- measurement ----------------------------------------------------------------------------


def check_isolation(app, service, orgs: list[Org]) -> None:
    """The figures mean something only if the app role is really subject to RLS."""
    org = orgs[0]
    # All the bench organisations' messages: RLS alone must narrow this to the active one.
    every_bench_org = "SELECT count(*) FROM messages WHERE organization_id = ANY(%s)"
    ids = [o.id for o in orgs]
    app.execute(SET_CONTEXT, [str(org.id)])
    seen_by_app = app.execute(every_bench_org, [ids]).fetchone()[0]
    app.commit()
    seen_without_context = app.execute(every_bench_org, [ids]).fetchone()[0]
    app.commit()
    seen_by_service = service.execute(every_bench_org, [ids]).fetchone()[0]
    service.commit()
    per_org = messages_per_conversation() * len(org.conversations)
    if (seen_by_app, seen_without_context, seen_by_service) != (per_org, 0, per_org * len(orgs)):
        raise RuntimeError(
            "RLS is not isolating the app role: it saw "
            f"{seen_by_app} rows in its org (expected {per_org}), {seen_without_context} with "
            f"no org set (expected 0); the service role saw {seen_by_service}"
        )


def params_for(orgs: list[Org], round_no: int, now: datetime) -> tuple[Org, dict]:
    org = orgs[round_no % len(orgs)]
    turn = round_no // len(orgs)
    return org, {
        "org": org.id,
        "conversation": org.conversations[turn % len(org.conversations)],
        "campaign": org.campaigns[turn % len(org.campaigns)],
        "since": now - timedelta(days=14),
    }


def query_set(conn, org: Org, params: dict) -> tuple[int, list[int], list[list]]:
    """One tenant transaction: set the context, run every query, commit. Nanoseconds."""
    per_query: list[int] = []
    results: list[list] = []
    started = time.perf_counter_ns()
    with conn.cursor() as cursor:
        cursor.execute(SET_CONTEXT, [str(org.id)])
        for sql in QUERIES.values():
            t = time.perf_counter_ns()
            cursor.execute(sql, params)
            results.append(cursor.fetchall())
            per_query.append(time.perf_counter_ns() - t)
    conn.commit()
    return time.perf_counter_ns() - started, per_query, results


def measure(app, service, orgs: list[Org], now: datetime) -> dict:
    variants = {"rls": app, "no_rls": service}
    # Warm-up: one pass over every organisation, checking that both roles agree.
    for round_no in range(max(len(orgs), 10)):
        org, params = params_for(orgs, round_no, now)
        answers = {name: query_set(conn, org, params)[2] for name, conn in variants.items()}
        if answers["rls"] != answers["no_rls"]:
            names = [n for n, a, b in zip(QUERIES, *answers.values(), strict=True) if a != b]
            raise RuntimeError(f"app and service roles disagree on {', '.join(names)}")
        if not all(answers["rls"]):
            raise RuntimeError("a benchmark query returned no rows: the data set is wrong")

    totals: dict[str, list[int]] = {name: [] for name in variants}
    per_query: dict[str, list[list[int]]] = {name: [] for name in variants}
    deadline = time.monotonic() + MAX_SECONDS
    rounds = 0
    gc.disable()
    try:
        while rounds < MAX_ROUNDS and time.monotonic() < deadline:
            org, params = params_for(orgs, rounds, now)
            order = ["rls", "no_rls"] if rounds % 2 == 0 else ["no_rls", "rls"]
            for name in order:
                total, each, _ = query_set(variants[name], org, params)
                totals[name].append(total)
                per_query[name].append(each)
            rounds += 1
    finally:
        gc.enable()

    def ms(ns: float) -> float:
        return round(ns / 1e6, 4)

    rls, plain = statistics.median(totals["rls"]), statistics.median(totals["no_rls"])
    breakdown = {}
    for i, name in enumerate(QUERIES):
        q_rls = statistics.median(row[i] for row in per_query["rls"])
        q_plain = statistics.median(row[i] for row in per_query["no_rls"])
        breakdown[name] = {
            "rls_ms": ms(q_rls),
            "no_rls_ms": ms(q_plain),
            "ratio": round(q_rls / q_plain, 3),
        }
    return {
        "rounds": rounds,
        "rls_ms": ms(rls),
        "no_rls_ms": ms(plain),
        "ratio": round(rls / plain, 3),
        "overhead_pct": round((rls / plain - 1) * 100, 1),
        "target_overhead_pct": TARGET_OVERHEAD_PCT,
        "per_query": breakdown,
    }
