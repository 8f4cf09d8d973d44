"""Daily rows' extras as `json` instead of `jsonb` (see JSONTextField): ingestion no longer
builds jsonb for every row. The table is rewritten once (jsonb casts to json by assignment)."""

from django.db import migrations

import metrics.models


class Migration(migrations.Migration):
    dependencies = [
        ("metrics", "0010_rollups_pending"),
    ]

    operations = [
        migrations.AlterField(
            model_name="dailydevelopermetric",
            name="extras",
            field=metrics.models.JSONTextField(blank=True, default=dict),
        ),
    ]
