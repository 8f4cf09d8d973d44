"""The dashboards' rollups (metrics/migrations/0008, 0010, 0012): after any write to the daily
rows — ingestion's inserts and ON CONFLICT replacements, sums within a run, identity merges and
deletes, organisation deletes, random mixes of inserts, updates and deletes, with inserts
applied at once or left pending until the run (or its COMMIT) applies them — they equal an
aggregate of the daily rows made from scratch; and the dashboards read from them give exactly
the figures the daily rows give, for ranges that start and end mid-week."""

from __future__ import annotations

import datetime as dt
import importlib
import random
import uuid
from collections import defaultdict

import psycopg
import pytest
from django.core.exceptions import ValidationError
from django.db import ProgrammingError, connection, connections, transaction
from django.utils import timezone
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from metrics import selectors, services
from metrics.models import (
    DailyDeveloperMetric,
    DailyToolRollup,
    DeveloperIdentity,
    DeveloperTeam,
    MetricIngestionRun,
    WeeklyDeveloperRollup,
    WeeklyDeveloperToolRollup,
)
from tap.orgs import services as org_services
from tap.tenancy import org_context
from tests.metrics.helpers import claude_record, copilot_record, ingest, ndjson, write

pytestmark = pytest.mark.django_db

COUNTERS = ("suggestions", "acceptances", "completions", "sessions")
# A Thursday: the data below starts and ends mid-week.
START = dt.date(2026, 3, 5)


# --- the rollups, from scratch ------------------------------------------------------------------


def monday(day: dt.date) -> dt.date:
    return day - dt.timedelta(days=day.weekday())


def running(per_day: list[list[int]]) -> list[list[int]]:
    """[counter][day] values → [counter][k] = sum of days 0..k."""
    return [[sum(values[: k + 1]) for k in range(7)] for values in per_day]


def expected_rollups(org) -> tuple[dict, dict, dict]:
    daily: dict = {}
    tool_weekly: dict = defaultdict(lambda: [0, [[0] * 7 for _ in COUNTERS]])
    weekly: dict = defaultdict(lambda: [[0] * 7, [[0] * 7 for _ in COUNTERS]])
    with org_context(org.id):
        for row in DailyDeveloperMetric.objects.all():
            values = [getattr(row, c) for c in COUNTERS]
            day = daily.setdefault((row.date, row.tool), [0, 0, 0, 0, 0])
            day[0] += 1
            for i, v in enumerate(values):
                day[i + 1] += v
            week, k = monday(row.date), row.date.weekday()
            entry = tool_weekly[(week, row.developer_identity_id, row.tool)]
            entry[0] |= 1 << k
            across = weekly[(week, row.developer_identity_id)]
            across[0][k] += 1
            for i, v in enumerate(values):
                entry[1][i][k] += v
                across[1][i][k] += v
    return (
        {key: tuple(v) for key, v in daily.items()},
        {
            key: (mask, [sum(values) for values in per_day], running(per_day))
            for key, (mask, per_day) in tool_weekly.items()
        },
        {
            key: (
                tools,
                sum(1 << k for k in range(7) if tools[k]),
                [sum(values) for values in per_day],
            )
            for key, (tools, per_day) in weekly.items()
        },
    )


def actual_rollups(org) -> tuple[dict, dict, dict]:
    with org_context(org.id):
        daily = {
            (r.date, r.tool): (
                r.developers,
                r.suggestions,
                r.acceptances,
                r.completions,
                r.sessions,
            )
            for r in DailyToolRollup.objects.all()
        }
        tool_weekly = {
            (r.week, r.developer_identity_id, r.tool): (
                r.days,
                [getattr(r, c) for c in COUNTERS],
                r.totals_upto,
            )
            for r in WeeklyDeveloperToolRollup.objects.all()
        }
        weekly = {
            (r.week, r.developer_identity_id): (
                r.tools_per_day,
                r.days,
                [getattr(r, c) for c in COUNTERS],
            )
            for r in WeeklyDeveloperRollup.objects.all()
        }
    return daily, tool_weekly, weekly


def assert_rollups_exact(org) -> None:
    expected, actual = expected_rollups(org), actual_rollups(org)
    for name, want, got in zip(("daily", "tool weekly", "weekly"), expected, actual, strict=True):
        assert got == want, name


# --- writing daily rows ---------------------------------------------------------------------


def make_identities(org, n: int, *, emails: bool = False) -> list[DeveloperIdentity]:
    """Developers known by a login (and every other one, with `emails`, by an email only: those
    two can be merged)."""
    with org_context(org.id):
        return [
            DeveloperIdentity.objects.create(organization=org, email=f"dev{i}@x.example")
            if emails and i % 2
            else DeveloperIdentity.objects.create(organization=org, github_login=f"dev{i}")
            for i in range(n)
        ]


def make_run(org) -> MetricIngestionRun:
    with org_context(org.id):
        # A file of its own (each pending run holds one: runs_one_queued_per_file).
        return MetricIngestionRun.objects.create(
            organization=org, file_name="test", sha256=uuid.uuid4().hex
        )


def upsert(org, run, rows) -> None:
    """Daily rows as ingestion writes them: one INSERT … ON CONFLICT DO UPDATE."""
    if not rows:
        return
    values = ", ".join(["(%s, %s, %s, %s, %s, %s, %s, %s, %s, '{}', %s, now(), now())"] * len(rows))
    params = []
    for identity, day, tool, s, a, c, n in rows:
        params += [uuid.uuid4(), org.id, identity, day, tool, s, a, c, n, run.pk]
    with org_context(org.id), connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO daily_developer_metrics AS d (id, organization_id, "
            "developer_identity_id, date, tool, suggestions, acceptances, completions, sessions, "
            f"extras, ingestion_run_id, created_at, updated_at) VALUES {values} "
            "ON CONFLICT (organization_id, developer_identity_id, date, tool) DO UPDATE SET "
            "suggestions = EXCLUDED.suggestions, acceptances = EXCLUDED.acceptances, "
            "completions = EXCLUDED.completions, sessions = EXCLUDED.sessions, "
            "updated_at = now()",
            params,
        )


def random_rows(rng, identities, days: int, tools=("copilot", "claude_code")) -> list[tuple]:
    rows = []
    for identity in identities:
        for offset in range(days):
            for tool in tools:
                if rng.random() < 0.6:
                    day = START + dt.timedelta(days=offset)
                    values = [rng.randint(0, 50) for _ in COUNTERS]
                    rows.append((identity.pk, day, tool, *values))
    return rows


# --- every write path -------------------------------------------------------------------------


def test_ingestion_fills_the_rollups(org_a, tmp_path):
    copilot = [
        copilot_record(f"dev{i}", day=f"2026-03-{d:02d}", code_generation_activity_count=i + d)
        for i in range(4)
        for d in range(5, 19)
    ]
    claude = [
        claude_record(f"dev{i}@x.example", date=f"2026-03-{d:02d}T00:00:00Z", accepted=i)
        for i in range(3)
        for d in range(9, 13)
    ]
    run = ingest(org_a, write(tmp_path, "c.ndjson", ndjson(copilot)))
    assert run.status == "succeeded", run.message
    run = ingest(org_a, write(tmp_path, "cc.ndjson", ndjson(claude)))
    assert run.status == "succeeded", run.message
    assert_rollups_exact(org_a)
    with org_context(org_a.id):
        assert DailyToolRollup.objects.count() == 14 + 4
        # dev0 has Copilot on all of Monday 9 to Sunday 15 March.
        dev0 = DeveloperIdentity.objects.get(github_login="dev0")
        row = WeeklyDeveloperToolRollup.objects.get(
            developer_identity=dev0, week=dt.date(2026, 3, 9), tool="copilot"
        )
        assert row.days == 0b1111111
        assert row.totals_upto[0] == [9, 19, 30, 42, 55, 69, 84]


def test_replacements_and_unchanged_rows_on_conflict(org_a, tmp_path):
    first = [copilot_record(f"dev{i}", day=f"2026-03-{d:02d}") for i in range(3) for d in (5, 9)]
    ingest(org_a, write(tmp_path, "a.ndjson", ndjson(first)))
    revised = [
        copilot_record("dev0", day="2026-03-05", code_generation_activity_count=77),
        copilot_record("dev1", day="2026-03-05"),  # unchanged
        copilot_record("dev1", day="2026-03-10", loc_added_sum=5),  # new
    ]
    run = ingest(org_a, write(tmp_path, "b.ndjson", ndjson(revised)))
    assert (run.rows_new, run.rows_replaced, run.rows_unchanged) == (1, 1, 1)
    assert_rollups_exact(org_a)
    with org_context(org_a.id):
        assert DailyToolRollup.objects.get(date=dt.date(2026, 3, 5)).suggestions == 77 + 10 + 10


def test_rows_of_one_key_in_one_run_are_summed_in_the_rollups(org_a, tmp_path):
    claude = [
        claude_record("a@x.example", date="2026-03-05T00:00:00Z", accepted=3, sessions=1),
        claude_record("a@x.example", date="2026-03-05T00:00:00Z", accepted=4, remote=True),
        claude_record("a@x.example", date="2026-03-06T00:00:00Z", accepted=1),
    ]
    run = ingest(org_a, write(tmp_path, "cc.ndjson", ndjson(claude)))
    assert run.status == "succeeded", run.message
    assert_rollups_exact(org_a)
    with org_context(org_a.id):
        day = DailyToolRollup.objects.get(date=dt.date(2026, 3, 5))
    assert (day.developers, day.sessions) == (1, 1 + 3)


def test_identity_merge_moves_the_rollups(org_a, dave, tmp_path):
    ingest(
        org_a,
        write(
            tmp_path,
            "c.ndjson",
            ndjson([copilot_record("mona", day=f"2026-03-{d:02d}") for d in (5, 6, 9)]),
        ),
    )
    ingest(
        org_a,
        write(
            tmp_path,
            "cc.ndjson",
            ndjson(
                [claude_record("mona@x.example", date=f"2026-03-0{d}T00:00:00Z") for d in (6, 7)]
            ),
        ),
    )
    with org_context(org_a.id):
        keep = DeveloperIdentity.objects.get(github_login="mona")
        other = DeveloperIdentity.objects.get(email="mona@x.example")
        before = selectors.overview(
            org_a.id, selectors.Filters(dt.date(2026, 3, 1), START + dt.timedelta(days=10))
        )
        assert before["kpis"]["developers"] == 2
        services.identity_merge(actor=dave, org=org_a, keep=keep, other=other)
        assert_rollups_exact(org_a)
        assert not WeeklyDeveloperToolRollup.objects.filter(developer_identity_id=other.pk).exists()
        assert not WeeklyDeveloperRollup.objects.filter(developer_identity_id=other.pk).exists()
        week = WeeklyDeveloperRollup.objects.get(developer_identity=keep, week=dt.date(2026, 3, 2))
        assert week.tools_per_day == [0, 0, 0, 1, 2, 1, 0]
        after = selectors.overview(
            org_a.id, selectors.Filters(dt.date(2026, 3, 1), START + dt.timedelta(days=10))
        )
    assert after["kpis"]["developers"] == 1
    assert after["kpis"]["suggestions"] == before["kpis"]["suggestions"]


def test_deleting_an_identity_takes_its_rollups_away(org_a):
    identities = make_identities(org_a, 3)
    run = make_run(org_a)
    upsert(org_a, run, random_rows(random.Random(1), identities, 10))
    with org_context(org_a.id):
        DeveloperIdentity.objects.filter(pk=identities[1].pk).delete()
        assert not WeeklyDeveloperRollup.objects.filter(
            developer_identity_id=identities[1].pk
        ).exists()
    assert_rollups_exact(org_a)


def test_deleting_every_row_empties_the_rollups(org_a):
    identities = make_identities(org_a, 2)
    run = make_run(org_a)
    upsert(org_a, run, random_rows(random.Random(2), identities, 9))
    with org_context(org_a.id):
        DailyDeveloperMetric.objects.all().delete()
        assert not DailyToolRollup.objects.exists()
        assert not WeeklyDeveloperToolRollup.objects.exists()
        assert not WeeklyDeveloperRollup.objects.exists()


# One step of a random sequence: (kind, developer, other developer, day offsets, tool, value).
steps = st.tuples(
    st.sampled_from(["upsert", "update", "move", "delete", "merge"]),
    st.integers(0, 3),
    st.integers(0, 3),
    st.lists(st.integers(0, 17), min_size=1, max_size=6, unique=True),
    st.sampled_from(["copilot", "claude_code", "cursor"]),
    st.integers(0, 1000),
)


def run_steps(org, dave, sequence, after_each_step) -> None:
    """Apply a random sequence of writes to four developers' daily rows."""
    identities = make_identities(org, 4, emails=True)
    run = make_run(org)
    merged = set()
    for kind, i, j, offsets, tool, value in sequence:
        days = [START + dt.timedelta(days=o) for o in offsets]
        dev, other = identities[i], identities[j]
        if i in merged or (kind == "merge" and (j in merged or i == j)):
            continue  # merged away: it no longer exists
        with org_context(org.id):
            mine = DailyDeveloperMetric.objects.filter(developer_identity=dev)
            if kind == "upsert":
                upsert(
                    org,
                    run,
                    [(dev.pk, d, tool, value, value // 2, value % 7, 1) for d in days],
                )
            elif kind == "update":
                mine.filter(date__in=days).update(suggestions=value, sessions=value % 3)
            elif kind == "move":
                # To other days (a row's date and week change), where nothing clashes.
                taken = set(
                    DailyDeveloperMetric.objects.filter(developer_identity=dev).values_list(
                        "date", "tool"
                    )
                )
                for row in mine.filter(date__in=days):
                    target = row.date + dt.timedelta(days=value % 9 + 1)
                    if (target, row.tool) not in taken:
                        taken.discard((row.date, row.tool))
                        taken.add((target, row.tool))
                        DailyDeveloperMetric.objects.filter(pk=row.pk).update(date=target)
            elif kind == "delete":
                mine.filter(date__in=days).delete()
            elif kind == "merge":
                try:
                    services.identity_merge(actor=dave, org=org, keep=dev, other=other)
                except ValidationError:
                    pass  # a clash (same day and tool, two logins): refused, nothing moved
                else:
                    merged.add(j)
        after_each_step()


SEQUENCES = settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@SEQUENCES
@given(st.lists(steps, min_size=1, max_size=8))
def test_any_sequence_of_writes_keeps_the_rollups_exact(org_a, dave, sequence):
    with transaction.atomic():
        run_steps(org_a, dave, sequence, lambda: assert_rollups_exact(org_a))
        transaction.set_rollback(True)


def rollups_pending() -> None:
    """What ingestion does (migration 0010): inserted rows wait in a temporary table."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT tap_rollups_hold()")


@SEQUENCES
@given(st.lists(steps, min_size=1, max_size=8))
def test_pending_inserts_reach_the_rollups_exactly_whatever_happens_in_between(
    org_a, dave, sequence
):
    """Inserts wait (as during ingestion) while updates, moves, deletes and merges of the same
    rows run: those apply what waits first, so applying the rest at the end is exact."""
    with transaction.atomic():
        rollups_pending()
        run_steps(org_a, dave, sequence, lambda: None)
        apply_pending(org_a)
        assert_rollups_exact(org_a)
        transaction.set_rollback(True)


def apply_pending(org) -> None:
    with org_context(org.id), connection.cursor() as cursor:
        cursor.execute("SELECT tap_rollups_apply_pending()")


def one_pending_row(org) -> None:
    """Inside a transaction: one daily row (5 suggestions), its rollups pending."""
    identity = make_identities(org, 1)[0]
    run = make_run(org)
    rollups_pending()
    upsert(org, run, [(identity.pk, START, "copilot", 5, 1, 1, 1)])


def test_pending_inserts_wait_until_applied(org_a):
    with transaction.atomic():
        one_pending_row(org_a)
        with org_context(org_a.id):
            assert not DailyToolRollup.objects.exists()
        apply_pending(org_a)
        with org_context(org_a.id):
            assert DailyToolRollup.objects.get().suggestions == 5
        assert_rollups_exact(org_a)
        transaction.set_rollback(True)


@pytest.mark.parametrize("change", ["update", "delete"])
def test_a_pending_row_changed_before_it_is_applied(org_a, change):
    """The UPDATE and DELETE triggers apply what waits before they subtract: without that, the
    rollups would keep the row's first values (or a deleted row) once applied."""
    with transaction.atomic():
        one_pending_row(org_a)
        with org_context(org_a.id):
            rows = DailyDeveloperMetric.objects.all()
            if change == "update":
                rows.update(suggestions=9)
            else:
                rows.delete()
        apply_pending(org_a)
        assert_rollups_exact(org_a)
        transaction.set_rollback(True)


@pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])
def test_rows_still_held_at_commit_reach_the_rollups(org_a):
    """Migration 0012: a transaction that commits without releasing what it holds (a future
    write path that forgets to) still leaves the rollups exact; holding twice is harmless."""
    with org_context(org_a.id):
        one_pending_row(org_a)
        rollups_pending()
        assert not DailyToolRollup.objects.exists()
    with org_context(org_a.id):
        assert DailyToolRollup.objects.get().suggestions == 5
    assert_rollups_exact(org_a)


@pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])
def test_a_hold_after_the_guard_fired_early_is_guarded_again(org_a):
    """`SET CONSTRAINTS ALL IMMEDIATE` (Django's check_constraints) fires the guard at once;
    the next hold arms it again, so what that hold keeps back still reaches the rollups."""
    with org_context(org_a.id):
        rollups_pending()
        with connection.cursor() as cursor:
            cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")  # and left so
        one_pending_row(org_a)
    with org_context(org_a.id):
        assert DailyToolRollup.objects.get().suggestions == 5
    assert_rollups_exact(org_a)


@pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])
def test_a_release_applies_at_once_and_stops_holding(org_a):
    """Released rows are in the rollups before COMMIT; later writes go straight to them."""
    with org_context(org_a.id):
        one_pending_row(org_a)
        with connection.cursor() as cursor:
            cursor.execute("SELECT tap_rollups_release()")
        # Not held: in the rollups at once.
        other = DeveloperIdentity.objects.create(organization=org_a, github_login="other")
        upsert(org_a, make_run(org_a), [(other.pk, START, "copilot", 2, 0, 0, 0)])
        assert DailyToolRollup.objects.get().suggestions == 5 + 2
    with org_context(org_a.id):
        assert DailyToolRollup.objects.get().suggestions == 5 + 2
    assert_rollups_exact(org_a)


@pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])
def test_rows_held_past_their_organisation_fail_the_commit(org_a):
    with (
        pytest.raises(ProgrammingError, match="outside their organisation's context"),
        transaction.atomic(),
    ):
        one_pending_row(org_a)  # its own org_context, left before the COMMIT
    with org_context(org_a.id):
        assert not DailyDeveloperMetric.objects.exists()
        assert not DailyToolRollup.objects.exists()


@pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])
def test_deleting_an_organisation_takes_its_rollups_and_leaves_the_others(org_a, org_b, alice):
    for org, seed in ((org_a, 3), (org_b, 4)):
        upsert(org, make_run(org), random_rows(random.Random(seed), make_identities(org, 3), 12))
    org_services.org_delete(actor=alice, org=org_a)
    for model in (DailyToolRollup, WeeklyDeveloperToolRollup, WeeklyDeveloperRollup):
        rows = model.all_objects.using("service")
        assert not rows.filter(organization_id=org_a.id).exists()
        assert rows.filter(organization_id=org_b.id).exists()
    assert_rollups_exact(org_b)


# --- the migration's backfill, and the writers' lock -------------------------------------------


@pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])
def test_the_migration_rebuilds_the_rollups_from_the_daily_rows(org_a, org_b):
    for org, seed in ((org_a, 5), (org_b, 6)):
        upsert(org, make_run(org), random_rows(random.Random(seed), make_identities(org, 4), 15))
    expected = [expected_rollups(org) for org in (org_a, org_b)]
    migration = importlib.import_module("metrics.migrations.0008_rollups")
    tables = ("daily_developer_metrics", *migration.ROLLUPS)
    with transaction.atomic(using="owner"), connections["owner"].cursor() as cursor:
        for table in tables:
            cursor.execute(f"ALTER TABLE {table} NO FORCE ROW LEVEL SECURITY")
        for rollup in migration.ROLLUPS:
            cursor.execute(f"DELETE FROM {rollup}")
        cursor.execute(migration.BACKFILL)
        for table in tables:
            cursor.execute(f"ALTER TABLE {table} FORCE ROW LEVEL SECURITY")
    assert [actual_rollups(org) for org in (org_a, org_b)] == expected


def app_connect() -> psycopg.Connection:
    params = connections["default"].get_connection_params()
    for key in ("cursor_factory", "context", "prepare_threshold"):
        params.pop(key, None)
    return psycopg.connect(**params)


@pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])
def test_writers_of_one_organisation_queue_instead_of_deadlocking(org_a, org_b):
    """A second writer of the same organisation waits for the first to commit (before it locks
    a single row); another organisation's writer does not."""
    a1, a2 = make_identities(org_a, 2)
    (b1,) = make_identities(org_b, 1)
    run_a, run_b = make_run(org_a), make_run(org_b)
    insert = (
        "INSERT INTO daily_developer_metrics (id, organization_id, developer_identity_id, date, "
        "tool, suggestions, acceptances, completions, sessions, extras, ingestion_run_id, "
        "created_at, updated_at) VALUES (%s, %s, %s, %s, 'copilot', 1, 1, 1, 1, '{}', %s, "
        "now(), now())"
    )
    with app_connect() as first, app_connect() as second, app_connect() as elsewhere:
        first.execute("SELECT set_config('tap.org_id', %s, true)", [str(org_a.id)])
        first.execute(insert, [uuid.uuid4(), org_a.id, a1.pk, START, run_a.pk])
        second.execute("SELECT set_config('tap.org_id', %s, true)", [str(org_a.id)])
        second.execute("SET LOCAL lock_timeout = '200ms'")
        with pytest.raises(psycopg.errors.LockNotAvailable):
            second.execute(insert, [uuid.uuid4(), org_a.id, a2.pk, START, run_a.pk])
        second.rollback()
        elsewhere.execute("SELECT set_config('tap.org_id', %s, true)", [str(org_b.id)])
        elsewhere.execute("SET LOCAL lock_timeout = '200ms'")
        elsewhere.execute(insert, [uuid.uuid4(), org_b.id, b1.pk, START, run_b.pk])
        elsewhere.commit()
        first.commit()
        second.execute("SELECT set_config('tap.org_id', %s, true)", [str(org_a.id)])
        second.execute(insert, [uuid.uuid4(), org_a.id, a2.pk, START, run_a.pk])
        second.commit()
    assert_rollups_exact(org_a)
    with org_context(org_a.id):
        assert DailyToolRollup.objects.get().developers == 2


# --- isolation --------------------------------------------------------------------------------


def test_another_organisations_rollups_are_never_visible(org_a, org_b):
    upsert(org_a, make_run(org_a), random_rows(random.Random(7), make_identities(org_a, 3), 10))
    upsert(org_b, make_run(org_b), random_rows(random.Random(8), make_identities(org_b, 5), 10))
    for org in (org_a, org_b):
        with org_context(org.id), connection.cursor() as cursor:
            for table in (
                "daily_tool_rollups",
                "weekly_developer_tool_rollups",
                "weekly_developer_rollups",
            ):
                # RLS alone, without the query's own organisation filter.
                cursor.execute(f"SELECT DISTINCT organization_id FROM {table}")
                assert cursor.fetchall() == [(org.id,)], table
        assert_rollups_exact(org)
    with org_context(org_a.id):
        f = selectors.Filters(START, START + dt.timedelta(days=9))
        assert len(selectors.developer_list(org_a.id, f)) == 3
        assert selectors.overview(org_a.id, f)["kpis"] == reference_overview(org_a, f)["kpis"]


# --- the dashboards against the daily rows ------------------------------------------------------


def daily_rows(org) -> list[DailyDeveloperMetric]:
    with org_context(org.id):
        return list(DailyDeveloperMetric.objects.all())


def rate(a, s) -> float | None:
    return round(100 * a / s, 1) if s else None


def week_label(week, f) -> str:
    """'2026-03-09', or '2026-03-09 (5 of 7 days)' for a week the range cuts."""
    days = sum(1 for k in range(7) if f.start <= week + dt.timedelta(days=k) <= f.end)
    return week.isoformat() if days == 7 else f"{week.isoformat()} ({days} of 7 days)"


def reference_overview(org, f) -> dict:
    """The overview straight from the daily rows (what the old selectors computed)."""
    rows = [r for r in daily_rows(org) if f.start <= r.date <= f.end]
    tools_seen = sorted({r.tool for r in rows})
    shown = [f.tool] if f.tool else tools_seen
    chosen = [r for r in rows if not f.tool or r.tool == f.tool]
    per_day = defaultdict(set)
    per_week = defaultdict(set)
    for r in chosen:
        per_day[r.date].add(r.developer_identity_id)
        per_week[monday(r.date)].add(r.developer_identity_id)
    by_day = defaultdict(lambda: [0, 0, 0, 0])
    sessions = defaultdict(int)
    for r in rows:
        sessions[(r.date, r.tool)] += r.sessions
        if r.tool in shown:
            for i, c in enumerate(COUNTERS):
                by_day[r.date][i] += getattr(r, c)
    adoption = defaultdict(set)
    for r in rows:
        adoption[r.tool].add(r.developer_identity_id)
    totals = [sum(by_day[d][i] for d in f.days) for i in range(4)]
    return {
        "kpis": {
            "developers": len({r.developer_identity_id for r in chosen}),
            "suggestions": totals[0],
            "acceptances": totals[1],
            "rate": rate(totals[1], totals[0]),
            "lines": totals[2],
            "sessions": totals[3],
        },
        "active": [[d.isoformat(), len(per_day[d])] for d in f.days],
        "weekly": [[week_label(w, f), len(per_week[w])] for w in sorted(per_week)],
        "suggestions": [[d.isoformat(), by_day[d][0], by_day[d][1]] for d in f.days],
        "sessions": [[d.isoformat(), *[sessions[(d, t)] for t in shown]] for d in f.days],
        "adoption": [[t, len(adoption[t])] for t in sorted(adoption)],
        "tools": tools_seen,
    }


def reference_developers(org, f) -> dict:
    rows = [
        r
        for r in daily_rows(org)
        if f.start <= r.date <= f.end and (not f.tool or r.tool == f.tool)
    ]
    people = defaultdict(lambda: {"dates": set(), "sums": [0, 0, 0, 0], "tools": set()})
    for r in rows:
        p = people[r.developer_identity_id]
        p["dates"].add(r.date)
        p["tools"].add(r.tool)
        for i, c in enumerate(COUNTERS):
            p["sums"][i] += getattr(r, c)
    return {
        pk: (len(p["dates"]), *p["sums"], sorted(p["tools"]), max(p["dates"]))
        for pk, p in people.items()
    }


def reference_tiers(org, f) -> dict[str, set]:
    totals = defaultdict(int)
    for r in daily_rows(org):
        if f.start <= r.date <= f.end and (not f.tool or r.tool == f.tool):
            totals[r.developer_identity_id] += r.suggestions
    positive = sorted(v for v in totals.values() if v > 0)
    p25, p75 = selectors._percentile(positive, 0.25), selectors._percentile(positive, 0.75)
    tiers = defaultdict(set)
    with org_context(org.id):
        for pk in DeveloperIdentity.objects.filter(api_key_name="").values_list("pk", flat=True):
            v = totals.get(pk, 0)
            tiers[
                "none" if v <= 0 else "heavy" if v >= p75 else "moderate" if v >= p25 else "light"
            ].add(pk)
    return dict(tiers)


def reference_cohort_weeks(org, f, members: dict[str, set]) -> dict:
    active, accepted = set(), defaultdict(int)
    for r in daily_rows(org):
        if f.start <= r.date <= f.end and (not f.tool or r.tool == f.tool):
            active.add((r.developer_identity_id, monday(r.date)))
            accepted[(r.developer_identity_id, monday(r.date))] += r.acceptances
    weeks = sorted({w for _p, w in active})
    table = {}
    for name, people in members.items():
        if len(people) < selectors.SMALL_COHORT:
            continue
        table[name] = []
        for week in weeks:
            n = sum(1 for p in people if (p, week) in active)
            total = sum(accepted[(p, week)] for p in people)
            table[name].append(
                (week, round(100 * n / len(people), 1), round(total / n, 1) if n else None)
            )
    return {"weeks": weeks, "table": table}


@pytest.fixture
def busy_org(org_a):
    """Twelve developers over four and a half weeks (Thursday to Monday), three tools, teams,
    written in several statements and then revised, moved and partly deleted, as time goes."""
    rng = random.Random(42)
    identities = make_identities(org_a, 12)
    run = make_run(org_a)
    rows = random_rows(rng, identities, 32, tools=("copilot", "claude_code", "cursor"))
    rng.shuffle(rows)
    for start in range(0, len(rows), 150):
        upsert(org_a, run, rows[start : start + 150])
    revised = [(i, d, t, s + 3, a, c, n + 1) for i, d, t, s, a, c, n in rows[::7]]
    upsert(org_a, run, revised)
    with org_context(org_a.id):
        DailyDeveloperMetric.objects.filter(
            developer_identity=identities[3], tool="cursor"
        ).delete()
        DailyDeveloperMetric.objects.filter(
            developer_identity=identities[4], date__gte=START + dt.timedelta(days=20)
        ).delete()
        for i, identity in enumerate(identities):
            DeveloperTeam.objects.create(
                organization=org_a,
                developer_identity=identity,
                team=f"team{i % 2}",
                source="copilot",
            )
            if i < 6:
                DeveloperTeam.objects.create(
                    organization=org_a,
                    developer_identity=identity,
                    team="platform",
                    source="copilot",
                )
    assert_rollups_exact(org_a)
    return org_a


RANGES = [
    (START, START + dt.timedelta(days=31), ""),  # all of it
    (dt.date(2026, 3, 11), dt.date(2026, 3, 24), ""),  # Wednesday to Tuesday
    (dt.date(2026, 3, 9), dt.date(2026, 3, 22), "claude_code"),  # whole weeks, none cut
    (dt.date(2026, 3, 8), dt.date(2026, 3, 9), "copilot"),  # Sunday to Monday
    (dt.date(2026, 3, 17), dt.date(2026, 3, 17), "claude_code"),  # one day
    (dt.date(2026, 2, 20), dt.date(2026, 3, 6), ""),  # before the data, into it
    (dt.date(2026, 3, 26), dt.date(2026, 4, 30), "cursor"),  # out of it, past the end
    (dt.date(2026, 3, 13), dt.date(2026, 4, 3), "nothing"),  # a tool with no data
]


@pytest.mark.parametrize(("start", "end", "tool"), RANGES)
def test_the_overview_is_exactly_the_daily_rows(busy_org, start, end, tool):
    f = selectors.Filters(start, end, tool)
    want = reference_overview(busy_org, f)
    with org_context(busy_org.id):
        got = selectors.overview(busy_org.id, f)
    charts = {c.id: c.rows for c in got["charts"]}
    assert got["kpis"] == want["kpis"]
    assert got["tools"] == want["tools"]
    for chart in ("active", "weekly", "suggestions", "sessions"):
        assert charts[chart] == want[chart], chart
    assert charts["adoption"] == [[selectors.tool_label(t), n] for t, n in want["adoption"]]


@pytest.mark.parametrize(("start", "end", "tool"), RANGES)
def test_the_developer_list_is_exactly_the_daily_rows(busy_org, start, end, tool):
    f = selectors.Filters(start, end, tool)
    want = reference_developers(busy_org, f)
    with org_context(busy_org.id):
        got = selectors.developer_list(busy_org.id, f)
        used = selectors.developer_tools(busy_org.id, f, [p["id"] for p in got])
        # A page's developers: theirs only, each one's own.
        page = [p["id"] for p in got[3:8]]
        on_page = selectors.developer_tools(busy_org.id, f, page)
    assert on_page == {pk: tools for pk, tools in used.items() if pk in page}
    assert len(got) == 12
    for person in got:
        days, s, a, c, n, tools, last = want.get(person["id"], (0, 0, 0, 0, 0, [], None))
        assert (person["days"], person["suggestions"], person["acceptances"]) == (days, s, a)
        assert (person["lines"], person["sessions"], person["last"]) == (c, n, last)
        assert used.get(person["id"], []) == [selectors.tool_label(t) for t in tools]
    assert [p["suggestions"] for p in got] == sorted((p["suggestions"] for p in got), reverse=True)


@pytest.mark.parametrize(("start", "end", "tool"), RANGES)
@pytest.mark.parametrize("by", ["tier", "team", "adoption"])
def test_cohorts_are_exactly_the_daily_rows(busy_org, start, end, tool, by):
    f = selectors.Filters(start, end, tool)
    with org_context(busy_org.id):
        members = selectors.cohort_members(busy_org.id, f, by=by)
        got = selectors.cohorts(busy_org.id, f, by=by)
    if by == "tier":
        assert {k: v for k, v in members.items() if v} == reference_tiers(busy_org, f)
    if by == "adoption":
        first = {}
        for r in daily_rows(busy_org):
            if not tool or r.tool == tool:
                first[r.developer_identity_id] = min(
                    first.get(r.developer_identity_id, r.date), r.date
                )
        months = defaultdict(set)
        for pk, day in first.items():
            months[day.strftime("%Y-%m")].add(pk)
        assert dict(members) == dict(months)
    want = reference_cohort_weeks(busy_org, f, members)
    assert got["weeks"] == want["weeks"]
    shown = {r["name"]: r for r in got["cohorts"] if not r["suppressed"]}
    assert set(shown) == set(want["table"])
    for name, weeks in want["table"].items():
        assert [
            (w["week"], w["active_share"], w["per_active"]) for w in shown[name]["weeks"]
        ] == weeks


def test_freshness_and_seats_read_the_right_days(busy_org):
    rows = daily_rows(busy_org)
    with org_context(busy_org.id):
        DailyDeveloperMetric.objects.filter(pk=rows[0].pk).update(updated_at=timezone.now())
        rows = daily_rows(busy_org)
        fresh = {t["tool"]: (t["latest"], t["loaded"]) for t in selectors.freshness(busy_org.id)}
        latest = selectors.latest_day(busy_org.id)
        tools = selectors.tools(busy_org.id)
    assert tools == sorted({r.tool for r in rows})
    assert latest == max(r.date for r in rows)
    for tool in tools:
        day = max(r.date for r in rows if r.tool == tool)
        loaded = max(r.updated_at for r in rows if r.tool == tool and r.date == day)
        assert fresh[selectors.tool_label(tool)] == (day, loaded)


def test_unmatched_identities_count_their_daily_rows(busy_org):
    rows = daily_rows(busy_org)
    with org_context(busy_org.id):
        unmatched = selectors.unmatched_identities()
    assert len(unmatched) == 12
    for entry in unmatched:
        identity = entry["identity"]
        mine = [r.date for r in rows if r.developer_identity_id == identity.pk]
        assert (identity.days, identity.last) == (len(mine), max(mine, default=None))


@pytest.mark.parametrize("tool", ["", "copilot"])
def test_the_dashboards_query_count_does_not_grow(org_a, org_b, tool, django_assert_num_queries):
    """Whatever the rows, developers or weeks: the same queries, each one statement."""
    upsert(org_a, make_run(org_a), random_rows(random.Random(9), make_identities(org_a, 1), 1))
    upsert(org_b, make_run(org_b), random_rows(random.Random(9), make_identities(org_b, 12), 32))
    for org in (org_a, org_b):
        f = selectors.Filters(dt.date(2026, 3, 4), dt.date(2026, 4, 2), tool)
        with org_context(org.id), django_assert_num_queries(2 + 2 + 3 + 2 + 2):
            selectors.overview(org.id, f)
            people = selectors.developer_list(org.id, f)
            selectors.developer_tools(org.id, f, [p["id"] for p in people])
            selectors.cohorts(org.id, f, by="tier")  # the tiers: sums and everyone; the weeks
            selectors.cohorts(org.id, f, by="adoption")
            selectors.cohorts(org.id, f, by="team")
