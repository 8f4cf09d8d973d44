from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("metrics", "0014_api_key_live_name"),
    ]

    operations = [
        migrations.AddField(
            model_name="developerteam",
            name="as_of",
            field=models.DateField(blank=True, null=True),
        ),
    ]
