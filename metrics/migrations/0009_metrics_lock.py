"""`tap_metrics_lock(org)`: the organisation's metrics-writer lock (a transaction-level
advisory lock), taken by ingestion before it looks at which days already hold rows, and by the
rollup triggers before any write."""

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [("metrics", "0008_rollups")]

    operations = [
        migrations.RunSQL(
            sql="""
            CREATE OR REPLACE FUNCTION tap_metrics_lock(org uuid) RETURNS void
            LANGUAGE sql AS $$
                SELECT pg_advisory_xact_lock(hashtextextended('tap.metrics:' || org::text, 0))
            $$;
            """,
            reverse_sql="DROP FUNCTION tap_metrics_lock(uuid);",
        ),
    ]
