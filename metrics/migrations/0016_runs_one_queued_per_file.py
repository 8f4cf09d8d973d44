from django.db import migrations, models

# Uploads queued twice before this constraint (a double click): the later copies are failed
# with a reason, the earliest stays queued. Data migrations run as the owner, whom FORCE RLS
# binds too.
FAIL_DUPLICATES = """
    ALTER TABLE metric_ingestion_runs NO FORCE ROW LEVEL SECURITY;
    UPDATE metric_ingestion_runs r
    SET status = 'failed', finished_at = now(), updated_at = now(),
        message = 'The same upload was already queued; this copy was not processed.'
    FROM (
        SELECT id, row_number() OVER (
            PARTITION BY organization_id, sha256, skip_invalid ORDER BY created_at, id
        ) AS n
        FROM metric_ingestion_runs
        WHERE status IN ('pending', 'processing') AND source <> 'command'
    ) d
    WHERE r.id = d.id AND d.n > 1;
    ALTER TABLE metric_ingestion_runs FORCE ROW LEVEL SECURITY;
"""


class Migration(migrations.Migration):
    dependencies = [
        ("metrics", "0015_team_as_of"),
    ]

    operations = [
        migrations.RunSQL(FAIL_DUPLICATES, migrations.RunSQL.noop),
        migrations.AddConstraint(
            model_name="metricingestionrun",
            constraint=models.UniqueConstraint(
                condition=models.Q(("status__in", ["pending", "processing"]))
                & ~models.Q(("source", "command")),
                fields=("organization", "sha256", "skip_invalid"),
                name="runs_one_queued_per_file",
            ),
        ),
    ]
