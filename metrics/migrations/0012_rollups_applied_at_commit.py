"""Rows held back from the rollups (0010) reach them at COMMIT, whatever the caller does.

0010 left it to the caller to call `tap_rollups_release()` before committing; a transaction
that committed while still holding would have lost its held rows from the rollups (the pending
table is dropped at COMMIT), and the dashboards would have been wrong from then on. Now
`tap_rollups_hold()` also arms a deferred constraint trigger, on a row of a temporary table
of its own (one row per hold): it fires at COMMIT (before ON COMMIT DROP) and applies whatever
is still held; the firings after the first find nothing held. A deferred trigger fires earlier
only if the transaction runs `SET CONSTRAINTS ALL IMMEDIATE` (Django's `check_constraints`
does, in tests): it then applies what is held at that moment, which is just as exact, and the
next hold arms it again. Rows inserted after such a
statement and before any further hold wait for an explicit release: no path does that.

The rows are applied as whoever commits: row-level security lets them in only in their own
organisation's context. A transaction that leaves it before committing (an `org_context`
nested in another transaction) fails at COMMIT, with a message that says so, and nothing of
it is kept: never rollups that silently miss rows.
"""

import importlib

from django.db import migrations

pending = importlib.import_module("metrics.migrations.0010_rollups_pending")

HOLD = f"""
    CREATE FUNCTION tap_rollups_apply_at_commit() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM tap_rollups_apply_pending();
        RETURN NULL;
    EXCEPTION WHEN insufficient_privilege THEN
        RAISE EXCEPTION USING ERRCODE = 'insufficient_privilege', MESSAGE =
            'rows held back from the rollups reached COMMIT outside their organisation''s '
            'context: release them (tap_rollups_release) before leaving it (' || SQLERRM || ')';
    END $$;
    CREATE OR REPLACE FUNCTION tap_rollups_hold() RETURNS void LANGUAGE plpgsql AS $$
    BEGIN
        {pending.PENDING_TABLE}
        IF to_regclass('pg_temp.metrics_rollups_commit') IS NULL THEN
            CREATE TEMP TABLE metrics_rollups_commit (armed boolean) ON COMMIT DROP;
            CREATE CONSTRAINT TRIGGER metrics_rollups_commit
                AFTER INSERT ON metrics_rollups_commit DEFERRABLE INITIALLY DEFERRED
                FOR EACH ROW EXECUTE FUNCTION tap_rollups_apply_at_commit();
        END IF;
        -- Armed at every hold (deferred again, if a SET CONSTRAINTS ALL IMMEDIATE has fired
        -- an earlier one); a firing with nothing held applies nothing.
        SET CONSTRAINTS metrics_rollups_commit DEFERRED;
        INSERT INTO metrics_rollups_commit VALUES (true);
        PERFORM set_config('tap.rollups_pending', 'on', true);
    END $$;"""

# 0010's definition, as it was.
REVERSE = (
    pending.HOLD.replace("CREATE FUNCTION", "CREATE OR REPLACE FUNCTION", 1)
    + "\n    DROP FUNCTION tap_rollups_apply_at_commit();"
)


class Migration(migrations.Migration):
    dependencies = [("metrics", "0011_daily_extras_as_json")]

    operations = [migrations.RunSQL(HOLD, reverse_sql=REVERSE)]
