from django.apps import AppConfig


class OrgsConfig(AppConfig):
    name = "tap.orgs"
    label = "orgs"
    verbose_name = "Accounts and organisations"
    default_auto_field = "django.db.models.BigAutoField"
