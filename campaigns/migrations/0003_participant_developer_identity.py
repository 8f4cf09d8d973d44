import django.db.models.deletion
from django.db import migrations, models

from tap.rls import tenant_foreign_key


class Migration(migrations.Migration):
    dependencies = [
        ("campaigns", "0002_status_constraints"),
        ("metrics", "0002_tenant_keys_and_rls"),
    ]

    operations = [
        migrations.AddField(
            model_name="participant",
            name="developer_identity",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="participants",
                to="metrics.developeridentity",
            ),
        ),
        migrations.AddField(
            model_name="participant",
            name="identity_unlinked",
            field=models.BooleanField(default=False),
        ),
        # Same organisation only: a participant can never point at another org's developer.
        tenant_foreign_key(
            "participants",
            "developer_identity_id",
            "developer_identities",
            on_delete="SET NULL (developer_identity_id)",
        ),
    ]
