"""Rollups applied once per ingestion run instead of once per statement.

A run folds its rows into `daily_developer_metrics` every 10,000 rows, and 0008's INSERT
trigger upserted each fold's deltas into the rollups at once. A file sorted by day (as vendors
export them) touches every developer's weekly rollup rows again at each fold, so each weekly
row was rewritten three or four times per run: a third of the database's ingestion time.

Now a transaction may hold its inserted rows back: after `tap_rollups_hold()` (which creates
the session's temporary table `metrics_rollups_pending` and sets `tap.rollups_pending` for the
transaction), the INSERT trigger appends each statement's new rows (keys and counters) to that
table instead, and `tap_rollups_release()` adds all of them to the rollups in one pass per
rollup and stops holding. Ingestion holds for the length of its run.

Correctness does not rest on the caller's order: the UPDATE and DELETE triggers apply what is
pending before they subtract anything, so a row inserted earlier in the transaction is always in
the rollups before it is changed or removed. The additive deltas are the same as 0008's, so
the result is the same rollups, exactly.
"""

import importlib

from django.db import migrations

rollups = importlib.import_module("metrics.migrations.0008_rollups")

PENDING = "pg_temp.metrics_rollups_pending"
FLAG = "current_setting('tap.rollups_pending', true) = 'on'"
COLUMNS = "organization_id, developer_identity_id, date, tool, " + ", ".join(rollups.COUNTERS)

# (0012 arms the commit guard next to it.)
PENDING_TABLE = f"""CREATE TEMP TABLE IF NOT EXISTS metrics_rollups_pending (
            organization_id uuid, developer_identity_id uuid, date date, tool text,
            {", ".join(f"{c} bigint" for c in rollups.COUNTERS)}
        ) ON COMMIT DROP;"""

# (0012 replaces it, and puts it back when reversed.)
HOLD = f"""
    CREATE FUNCTION tap_rollups_hold() RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
        {PENDING_TABLE}
        PERFORM set_config('tap.rollups_pending', 'on', true);
    END $$;"""

APPLY = f"""
    CREATE FUNCTION tap_rollups_apply_pending() RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
        IF {FLAG} THEN
            {"".join(rollups._upsert(r, (PENDING,)) + ";" for r in rollups.ROLLUPS)}
            TRUNCATE {PENDING};
        END IF;
    END $$;{HOLD}
    CREATE FUNCTION tap_rollups_release() RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM tap_rollups_apply_pending();
        PERFORM set_config('tap.rollups_pending', 'off', true);
    END $$;"""


def _replace(name: str, body: str, declare: str = "") -> str:
    return rollups._function(name, body, declare).replace(
        "CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1
    )


DELETE_VARIABLES = f"org uuid; n bigint; partial boolean := false; {rollups.EMPTIED_VARIABLES}"
INSERT_PENDING = (
    f"IF {FLAG} THEN INSERT INTO {PENDING} SELECT {COLUMNS} FROM new_rows; "
    f"ELSE {rollups.INSERTED} END IF;"
)
# Only when the statement changed rows: an INSERT … ON CONFLICT fires the UPDATE trigger even
# when nothing conflicted, and applying at every such fold would undo the point of waiting.
APPLY_FIRST = "IF EXISTS (SELECT 1 FROM old_rows) THEN PERFORM tap_rollups_apply_pending(); END IF;"

SQL = "".join(
    (
        APPLY,
        _replace("tap_rollups_insert", INSERT_PENDING),
        _replace("tap_rollups_update", APPLY_FIRST + rollups.UPDATED, rollups.EMPTIED_VARIABLES),
        _replace("tap_rollups_delete", APPLY_FIRST + rollups.DELETED, DELETE_VARIABLES),
    )
)

REVERSE_SQL = "".join(
    (
        _replace("tap_rollups_insert", rollups.INSERTED),
        _replace("tap_rollups_update", rollups.UPDATED, rollups.EMPTIED_VARIABLES),
        _replace("tap_rollups_delete", rollups.DELETED, DELETE_VARIABLES),
        "DROP FUNCTION tap_rollups_release(); DROP FUNCTION tap_rollups_hold();",
        "DROP FUNCTION tap_rollups_apply_pending();",
    )
)


class Migration(migrations.Migration):
    dependencies = [("metrics", "0009_metrics_lock")]

    operations = [migrations.RunSQL(SQL, reverse_sql=REVERSE_SQL)]
