"""System checks for what a misconfiguration would silently break."""

from django.conf import settings
from django.core.checks import Error, Tags, register


@register(Tags.database, deploy=True)
def app_role_is_not_owner(app_configs, **kwargs):
    """Row-level security means nothing if the app connects as the tables' owner role."""
    app_user = settings.DATABASES["default"].get("USER")
    owner = settings.DATABASES["owner"].get("OPTIONS", {}).get("assume_role")
    if app_user and app_user in {owner, settings.DATABASES["owner"].get("USER"), "postgres"}:
        return [
            Error(
                "DATABASE_URL connects as the table owner or a superuser; RLS would not apply.",
                hint="Point DATABASE_URL at the app role (README, 'Database roles').",
                id="tap.E001",
            )
        ]
    return []
