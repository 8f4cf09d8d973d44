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


@register()
def ai_model_is_current(app_configs, **kwargs):
    """A deprecated model id fails loudly at start-up, not on the first participant's turn."""
    try:
        from anthropic.resources.messages.messages import DEPRECATED_MODELS  # noqa: PLC0415
    except ImportError:  # the SDK moved it: nothing to check against
        return []
    model = settings.TAP_AI_MODEL
    if model in DEPRECATED_MODELS:
        return [
            Error(
                f"TAP_AI_MODEL={model} is deprecated (end of life {DEPRECATED_MODELS[model]}).",
                hint="Set TAP_AI_MODEL to a current Claude model.",
                id="tap.E002",
            )
        ]
    return []


# Email backends that deliver nothing: fine while developing, silent loss in production (the
# campaign page would say "sent", and the links would sit in a log).
UNDELIVERED_EMAIL = {
    "django.core.mail.backends.console.EmailBackend",
    "django.core.mail.backends.filebased.EmailBackend",
    "django.core.mail.backends.locmem.EmailBackend",
    "django.core.mail.backends.dummy.EmailBackend",
}


@register(deploy=True)
def email_is_delivered(app_configs, **kwargs):
    if settings.EMAIL_BACKEND in UNDELIVERED_EMAIL:
        return [
            Error(
                f"EMAIL_URL gives {settings.EMAIL_BACKEND.rsplit('.', 2)[-2]} email: invitations "
                "would be marked sent and never delivered.",
                hint="Set EMAIL_URL to your SMTP server (README, 'Production').",
                id="tap.E003",
            )
        ]
    return []


@register(Tags.database, deploy=True)
def service_role_is_its_own(app_configs, **kwargs):
    """The relay, the workers' system jobs and the admin need the service role (BYPASSRLS);
    with DATABASE_SERVICE_URL unset they would connect as the app role and be refused."""
    app_user = settings.DATABASES["default"].get("USER")
    if settings.DATABASES["service"].get("USER") == app_user:
        return [
            Error(
                "DATABASE_SERVICE_URL connects as the app role: the outbox relay and system "
                "jobs would be refused, and no email or reply would ever go out.",
                hint="Point DATABASE_SERVICE_URL at the service role (README, 'Database roles').",
                id="tap.E004",
            )
        ]
    return []
