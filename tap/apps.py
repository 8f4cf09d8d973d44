from django.apps import AppConfig
from django.contrib.admin import apps as admin_apps


class TapConfig(AppConfig):
    name = "tap"
    verbose_name = "Tap platform"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401, PLC0415 - registers the system checks


class TapAdminConfig(admin_apps.AdminConfig):
    """Django's admin with Tap's site (tap/admin_site.py): staff views run across organisations."""

    default = False
    default_site = "tap.admin_site.TapAdminSite"
