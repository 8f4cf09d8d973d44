"""Rollups of `daily_developer_metrics` for the dashboards, kept exact by the database.

* `daily_tool_rollups` (organisation, day, tool): developers with a row, and sums.
* `weekly_developer_tool_rollups` (organisation, week, developer, tool): the days of the week
  with a row as a 7-bit mask, the week's totals, and running totals within the week (for
  ranges that cut the week).
* `weekly_developer_rollups` (organisation, week, developer): across tools, per day of the
  week on how many tools the developer has a row, the mask of days with any, and the week's
  totals (a range that cuts a week sums that week's per-tool rows instead).

Three statement-level triggers with transition tables (PostgreSQL wants one per event when
they have transition tables) fold each statement's rows into the rollups as deltas: + for new
rows, - for old ones; an UPDATE is both at once, each rollup aggregated from the transition
tables in one pass. Deltas commute, so concurrent transactions never overwrite each other's
changes; the per-tool masks are exact because a (developer, day, tool) has at most one daily
row, and the any-tool mask is recomputed from additive per-day counts. Rows that fall empty are
deleted. The functions run as the writer (SECURITY INVOKER): RLS applies to the rollups as to
the daily rows they come from.

A BEFORE STATEMENT trigger first takes the organisation's metrics-writer lock (a transaction
advisory lock on hashtextextended('tap.metrics:' || the tenant context's organisation, 0), which
ingestion may also take before it reads): writers of one organisation's metrics queue there,
before they lock any row, instead of deadlocking on the rollup rows they share (every run of a
tool touches the same days). Writers without a tenant context (the admin, deleting an
organisation) do not take it.

No CHECK constraints on the rollups' counts: PostgreSQL checks the row an INSERT … ON CONFLICT
proposes before it finds the conflict, and a proposed delta may be negative.
"""

import django.contrib.postgres.fields
import django.db.models.deletion
import django.db.models.manager
from django.db import migrations, models

from tap.rls import enable_rls

COUNTERS = ("suggestions", "acceptances", "completions", "sessions")

# Day of the week (Monday 0) by integer arithmetic: immutable, unlike date_trunc on a date,
# and cheap. 2000-01-03 was a Monday.
DOW = "(((date - date '2000-01-03') % 7 + 7) % 7)"

DAILY = "daily_tool_rollups"
TOOL_WEEKLY = "weekly_developer_tool_rollups"
WEEKLY = "weekly_developer_rollups"
KEYS = {
    DAILY: ("organization_id", "date", "tool"),
    TOOL_WEEKLY: ("organization_id", "week", "developer_identity_id", "tool"),
    WEEKLY: ("organization_id", "week", "developer_identity_id"),
}
COLUMNS = {
    DAILY: ("developers", *COUNTERS),
    TOOL_WEEKLY: ("days", *COUNTERS, "totals_upto"),
    WEEKLY: ("tools_per_day", "days", *COUNTERS),
}


def _changes(tables: tuple[str, ...]) -> str:
    """Signed rows of the statement: +1 for new rows, -1 for old ones."""
    return " UNION ALL ".join(
        f"SELECT {-1 if table == 'old_rows' else 1} AS sign, organization_id, "
        f"developer_identity_id, date, tool, {', '.join(COUNTERS)}, {DOW} AS dow FROM {table}"
        for table in tables
    )


def _delta(rollup: str, tables: tuple[str, ...]) -> str:
    """The statement's change to each row of `rollup`, in its columns' order."""
    if rollup == DAILY:
        sums = [f"sum(sign * {c})" for c in COUNTERS]
        values = ["sum(sign)::int", *sums]
        keys = "organization_id, date, tool"
        having = " OR ".join(f"{v} <> 0" for v in values)
        return (
            f"SELECT {keys}, {', '.join(values)} FROM ({_changes(tables)}) c "
            f"GROUP BY {keys} HAVING {having}"
        )
    # The week's totals, and running totals within it: [c][k + 1] = counter c over days 0..k.
    sums = ", ".join(f"sum(sign * {c})" for c in COUNTERS)
    totals = ", ".join(
        "ARRAY["
        + ", ".join(f"sum(CASE WHEN dow <= {k} THEN sign * {c} ELSE 0 END)" for k in range(7))
        + "]"
        for c in COUNTERS
    )
    if rollup == TOOL_WEEKLY:
        values = f"sum(sign << dow)::smallint, {sums}, ARRAY[{totals}]"
        keys = "organization_id, week, developer_identity_id, tool"
    else:
        counts = ", ".join(f"sum(CASE WHEN dow = {k} THEN sign ELSE 0 END)" for k in range(7))
        # The mask of a new row; an existing row's is recomputed from its new counts.
        mask = " | ".join(
            f"((sum(CASE WHEN dow = {k} THEN sign ELSE 0 END) > 0)::int << {k})" for k in range(7)
        )
        values = f"ARRAY[{counts}]::smallint[], ({mask})::smallint, {sums}"
        keys = "organization_id, week, developer_identity_id"
    return (
        f"SELECT {keys.replace('week', 'date - dow AS week')}, {values} "
        f"FROM ({_changes(tables)}) c GROUP BY {keys}"
    )


def _add(rollup: str, row: str, delta: str) -> str:
    """SET clause: each column of the rollup row plus the delta's."""
    if rollup == DAILY:
        return ", ".join(f"{c} = {row}.{c} + {delta}.{c}" for c in COLUMNS[DAILY])
    totals = ", ".join(
        "ARRAY["
        + ", ".join(
            f"{row}.totals_upto[{c}][{k}] + {delta}.totals_upto[{c}][{k}]" for k in range(1, 8)
        )
        + "]"
        for c in range(1, 5)
    )
    sums = ", ".join(f"{c} = {row}.{c} + {delta}.{c}" for c in COUNTERS)
    if rollup == TOOL_WEEKLY:
        return f"days = {row}.days + {delta}.days, {sums}, totals_upto = ARRAY[{totals}]"
    count = [f"{row}.tools_per_day[{k}] + {delta}.tools_per_day[{k}]" for k in range(1, 8)]
    # (Parentheses: PostgreSQL gives | and << the same precedence, left to right.)
    mask = " | ".join(f"(({n} > 0)::int << {k})" for k, n in enumerate(count))
    return f"tools_per_day = ARRAY[{', '.join(count)}], days = ({mask})::smallint, {sums}"


def _columns(rollup: str) -> str:
    return ", ".join((*KEYS[rollup], *COLUMNS[rollup]))


KEY_TYPES = {
    "organization_id": "uuid",
    "date": "date",
    "tool": "text",
    "week": "date",
    "developer_identity_id": "uuid",
}
PREFIX = {DAILY: "t", TOOL_WEEKLY: "w", WEEKLY: "d"}


def _upsert(rollup: str, tables: tuple[str, ...]) -> str:
    keys = ", ".join(KEYS[rollup])
    return f"""
        INSERT INTO {rollup} AS r ({_columns(rollup)})
        SELECT * FROM ({_delta(rollup, tables)}) d ORDER BY {keys}
        ON CONFLICT ({keys}) DO UPDATE SET {_add(rollup, "r", "excluded")}"""


def _subtract(rollup: str) -> str:
    """Rows leaving: only rollup rows that exist lose them (UPDATE, never an insert)."""
    match = " AND ".join(f"r.{k} = d.{k}" for k in KEYS[rollup])
    names = ", ".join((*KEYS[rollup], *COLUMNS[rollup]))
    return f"""
        UPDATE {rollup} r SET {_add(rollup, "r", "d")}
        FROM ({_delta(rollup, ("old_rows",))}) d ({names})
        WHERE {match}"""


def _emptied_variables(rollup: str) -> str:
    return " ".join(f"{PREFIX[rollup]}_{k} {KEY_TYPES[k]}[];" for k in KEYS[rollup])


def _and_delete_emptied(rollup: str, change: str) -> str:
    """`change` (an upsert or update of `rollup`), then delete the rows it left empty: their
    keys come back from the change itself, so no further pass over the transition tables."""
    keys = KEYS[rollup]
    variables = [f"{PREFIX[rollup]}_{k}" for k in keys]
    empty = "developers = 0" if rollup == DAILY else "days = 0"
    match = " AND ".join(f"r.{k} = e.{k}" for k in keys)
    return f"""
        WITH changed AS ({change} RETURNING {", ".join(f"r.{k}" for k in keys)}, r.{empty.split()[0]})
        SELECT {", ".join(f"array_agg({k})" for k in keys)} INTO {", ".join(variables)}
        FROM changed WHERE {empty};
        IF {variables[0]} IS NOT NULL THEN
            DELETE FROM {rollup} r USING unnest({", ".join(variables)}) AS e ({", ".join(keys)})
            WHERE {match} AND r.{empty};
        END IF;"""


ROLLUPS = (DAILY, TOOL_WEEKLY, WEEKLY)


def _function(name: str, body: str, declare: str = "") -> str:
    return f"""
    CREATE FUNCTION {name}() RETURNS trigger LANGUAGE plpgsql AS $$
    {f"DECLARE {declare}" if declare else ""}
    BEGIN
        {body}
        RETURN NULL;
    END $$;"""


INSERTED = "".join(_upsert(r, ("new_rows",)) + ";" for r in ROLLUPS)
UPDATED = "".join(_and_delete_emptied(r, _upsert(r, ("new_rows", "old_rows"))) for r in ROLLUPS)
EMPTIED_VARIABLES = " ".join(_emptied_variables(r) for r in ROLLUPS)
# Deleting all of an organisation's rows (deleting the organisation) drops its rollups whole,
# instead of subtracting a million rows from them: the day rollup counts the organisation's
# rows. Its writer lock first, so that no writer without it (the service role) slips rows in.
DELETED = f"""
        FOR org, n IN
            SELECT organization_id, count(*) FROM old_rows
            GROUP BY organization_id ORDER BY organization_id
        LOOP
            PERFORM pg_advisory_xact_lock(hashtextextended('tap.metrics:' || org::text, 0));
            IF n = (SELECT coalesce(sum(developers), 0) FROM {DAILY} WHERE organization_id = org)
            THEN
                {" ".join(f"DELETE FROM {r} WHERE organization_id = org;" for r in ROLLUPS)}
            ELSE
                partial := true;
            END IF;
        END LOOP;
        IF partial THEN
            {"".join(_and_delete_emptied(r, _subtract(r)) for r in ROLLUPS)}
        END IF;"""
BACKFILL = "".join(
    f"""
    INSERT INTO {r} ({_columns(r)}) {_delta(r, ("daily_developer_metrics",))};"""
    for r in ROLLUPS
)

SQL = f"""
    CREATE FUNCTION tap_metrics_writer_lock() RETURNS trigger LANGUAGE plpgsql AS $$
    DECLARE
        org uuid := nullif(current_setting('tap.org_id', true), '')::uuid;
    BEGIN
        IF org IS NOT NULL THEN
            PERFORM pg_advisory_xact_lock(hashtextextended('tap.metrics:' || org::text, 0));
        END IF;
        RETURN NULL;
    END $$;
    {_function("tap_rollups_insert", INSERTED)}
    {_function("tap_rollups_update", UPDATED, EMPTIED_VARIABLES)}
    {_function("tap_rollups_delete", DELETED, f"org uuid; n bigint; partial boolean := false; {EMPTIED_VARIABLES}")}

    CREATE TRIGGER daily_metrics_writer_lock
        BEFORE INSERT OR UPDATE OR DELETE ON daily_developer_metrics
        FOR EACH STATEMENT EXECUTE FUNCTION tap_metrics_writer_lock();
    CREATE TRIGGER daily_metrics_rollups_insert AFTER INSERT ON daily_developer_metrics
        REFERENCING NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION tap_rollups_insert();
    CREATE TRIGGER daily_metrics_rollups_update AFTER UPDATE ON daily_developer_metrics
        REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
        FOR EACH STATEMENT EXECUTE FUNCTION tap_rollups_update();
    CREATE TRIGGER daily_metrics_rollups_delete AFTER DELETE ON daily_developer_metrics
        REFERENCING OLD TABLE AS old_rows
        FOR EACH STATEMENT EXECUTE FUNCTION tap_rollups_delete();

    -- The rows already there. Data migrations run as the owner, whom FORCE RLS also binds, so
    -- RLS is relaxed for the owner inside this transaction only; creating the triggers above
    -- already holds the daily table against writers until it commits.
    ALTER TABLE daily_developer_metrics NO FORCE ROW LEVEL SECURITY;
    {"".join(f"ALTER TABLE {r} NO FORCE ROW LEVEL SECURITY;" for r in ROLLUPS)}
    {BACKFILL}
    ALTER TABLE daily_developer_metrics FORCE ROW LEVEL SECURITY;
    {"".join(f"ALTER TABLE {r} FORCE ROW LEVEL SECURITY;" for r in ROLLUPS)}
"""

REVERSE_SQL = """
    DROP TRIGGER daily_metrics_writer_lock ON daily_developer_metrics;
    DROP TRIGGER daily_metrics_rollups_insert ON daily_developer_metrics;
    DROP TRIGGER daily_metrics_rollups_update ON daily_developer_metrics;
    DROP TRIGGER daily_metrics_rollups_delete ON daily_developer_metrics;
    DROP FUNCTION tap_metrics_writer_lock();
    DROP FUNCTION tap_rollups_insert();
    DROP FUNCTION tap_rollups_update();
    DROP FUNCTION tap_rollups_delete();
"""


def _organization():
    return models.ForeignKey(
        db_constraint=False,
        db_index=False,
        on_delete=django.db.models.deletion.DO_NOTHING,
        related_name="+",
        to="orgs.organization",
    )


def _identity():
    return models.ForeignKey(
        db_constraint=False,
        db_index=False,
        on_delete=django.db.models.deletion.DO_NOTHING,
        related_name="+",
        to="metrics.developeridentity",
    )


def _managers():
    return [
        ("all_objects", django.db.models.manager.Manager()),
        ("objects", django.db.models.manager.Manager()),
    ]


class Migration(migrations.Migration):
    dependencies = [
        ("metrics", "0007_runs_guarded_in_the_database"),
        ("orgs", "0002_organization_transcript_retention"),
    ]

    operations = [
        migrations.CreateModel(
            name="DailyToolRollup",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "organization",
                        "date",
                        "tool",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("date", models.DateField()),
                ("tool", models.CharField(max_length=50)),
                ("developers", models.IntegerField()),
                ("suggestions", models.BigIntegerField()),
                ("acceptances", models.BigIntegerField()),
                ("completions", models.BigIntegerField()),
                ("sessions", models.BigIntegerField()),
                ("organization", _organization()),
            ],
            options={
                "db_table": "daily_tool_rollups",
                "abstract": False,
                "base_manager_name": "all_objects",
                "default_manager_name": "objects",
            },
            managers=_managers(),
        ),
        migrations.CreateModel(
            name="WeeklyDeveloperToolRollup",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "organization",
                        "week",
                        "developer_identity",
                        "tool",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("week", models.DateField()),
                ("tool", models.CharField(max_length=50)),
                ("days", models.SmallIntegerField()),
                ("suggestions", models.BigIntegerField()),
                ("acceptances", models.BigIntegerField()),
                ("completions", models.BigIntegerField()),
                ("sessions", models.BigIntegerField()),
                (
                    "totals_upto",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=django.contrib.postgres.fields.ArrayField(
                            base_field=models.BigIntegerField(), size=7
                        ),
                        size=4,
                    ),
                ),
                ("developer_identity", _identity()),
                ("organization", _organization()),
            ],
            options={
                "db_table": "weekly_developer_tool_rollups",
                "abstract": False,
                "base_manager_name": "all_objects",
                "default_manager_name": "objects",
            },
            managers=_managers(),
        ),
        migrations.CreateModel(
            name="WeeklyDeveloperRollup",
            fields=[
                (
                    "pk",
                    models.CompositePrimaryKey(
                        "organization",
                        "week",
                        "developer_identity",
                        blank=True,
                        editable=False,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("week", models.DateField()),
                (
                    "tools_per_day",
                    django.contrib.postgres.fields.ArrayField(
                        base_field=models.SmallIntegerField(), size=7
                    ),
                ),
                ("days", models.SmallIntegerField()),
                ("suggestions", models.BigIntegerField()),
                ("acceptances", models.BigIntegerField()),
                ("completions", models.BigIntegerField()),
                ("sessions", models.BigIntegerField()),
                ("developer_identity", _identity()),
                ("organization", _organization()),
            ],
            options={
                "db_table": "weekly_developer_rollups",
                "abstract": False,
                "base_manager_name": "all_objects",
                "default_manager_name": "objects",
            },
            managers=_managers(),
        ),
        *(enable_rls(r) for r in ROLLUPS),
        migrations.RunSQL(SQL, reverse_sql=REVERSE_SQL),
        # Nothing reads the daily rows by day or by tool any more: every remaining query names
        # the developer (the unique index).
        migrations.RemoveIndex(
            model_name="dailydevelopermetric", name="daily_metrics_org_date_idx"
        ),
        migrations.RemoveIndex(
            model_name="dailydevelopermetric", name="daily_metrics_org_tool_idx"
        ),
    ]
