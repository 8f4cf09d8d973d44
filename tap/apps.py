from django.apps import AppConfig


class TapConfig(AppConfig):
    name = "tap"
    verbose_name = "Tap platform"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from . import checks  # noqa: F401, PLC0415 - registers the system checks
