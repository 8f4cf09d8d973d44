from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("conversations", "0006_conversation_number"),
    ]

    operations = [
        migrations.AddField(
            model_name="campaignanalysis",
            name="unanalysed",
            field=models.JSONField(blank=True, default=list),
        ),
    ]
