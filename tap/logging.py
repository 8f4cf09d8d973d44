"""Structured logging: the request id, org id and task id ride along on every record.

Context lives in contextvars (never thread-locals, which leak between requests)."""

import logging
import re
import time
import uuid
from contextvars import ContextVar

from gunicorn.glogging import Logger as GunicornLogger

request_id_var: ContextVar[str | None] = ContextVar("tap_request_id", default=None)
task_id_var: ContextVar[str | None] = ContextVar("tap_task_id", default=None)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        from tap.tenancy import current_org_id  # noqa: PLC0415 - avoid an import cycle

        record.request_id = request_id_var.get()
        record.task_id = task_id_var.get()
        org_id = current_org_id()
        # The access line is written after the tenant context has ended: it names the org.
        record.org_id = str(org_id) if org_id else getattr(record, "org_id", None)
        return True


# Tokens travel in two paths: a participant's /c/<token>/ (campaigns/participant_urls.py)
# and a member invitation's /invitations/<token>/ (tap/orgs/urls.py).
# The token-free routes under those prefixes are left readable.
PARTICIPANT_TOKEN = re.compile(
    r"/(c|invitations)/(?!(?:accept|messages|poll|retry|end)/)[^/\s\"'?#<>]+"
)
# A password-reset link, /accounts/password/reset/<uidb64>/<token>/: whoever reads it can set
# the account's password. (Django then moves on to …/<uidb64>/set-password/, token-free.)
RESET_TOKEN = re.compile(
    r"/password/reset/(?!(?:sent|complete)/)[^/\s\"'?#<>]+/(?!set-password/)[^/\s\"'?#<>]+"
)
# LogRecord's own attributes; anything else on a record came in through `extra`.
_RECORD_ATTRS = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message"}


def redact(text: str) -> str:
    text = PARTICIPANT_TOKEN.sub(lambda m: f"/{m.group(1)}/[redacted]", text)
    return RESET_TOKEN.sub("/password/reset/[redacted]/[redacted]", text)


class RedactTokensFilter(logging.Filter):
    """Participant tokens never reach a log: Django logs the path of every 4xx/5xx response
    ("Not Found: /c/<token>/") with the request in `extra`, and runserver logs every request
    line. Rewrites the message and any `extra` value that would print a token."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if "/c/" in message or "/invitations/" in message:
            record.msg, record.args = redact(message), ()
        for key, value in list(vars(record).items()):
            if key in _RECORD_ATTRS or value is None:
                continue
            text = value if isinstance(value, str) else None
            if text is None and key == "request":
                text = repr(value)  # the JSON formatter would print "<WSGIRequest: GET '/c/…'>"
            if text is not None and ("/c/" in text or "/invitations/" in text):
                setattr(record, key, redact(text))
        return True


class RedactingGunicornLogger(GunicornLogger):
    """gunicorn's access log without participant tokens (request line, path, referrer).
    Enabled by gunicorn.conf.py (`logger_class`)."""

    def atoms(self, resp, req, environ, request_time):
        atoms = super().atoms(resp, req, environ, request_time)
        for key in ("r", "U", "f", "{raw_uri}e", "{path_info}e", "{request_uri}e", "{referer}i"):
            if isinstance(atoms.get(key), str):
                atoms[key] = redact(atoms[key])
        return atoms


access_logger = logging.getLogger("tap.access")


class RequestContextMiddleware:
    """Gives each request an id (echoed as X-Request-ID) for the logs, and writes one access
    line per request at INFO (TAP_ACCESS_LOG): method, path without its query and with any
    token redacted, status, duration, organisation — never a body or a header."""

    def __init__(self, get_response):
        from django.conf import settings  # noqa: PLC0415

        self.get_response = get_response
        self.access_log = getattr(settings, "TAP_ACCESS_LOG", True)

    def __call__(self, request):
        token = request_id_var.set(uuid.uuid4().hex)
        started = time.monotonic()
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = request_id_var.get()
            if self.access_log and access_logger.isEnabledFor(logging.INFO):
                org = getattr(request, "org", None)
                access_logger.info(
                    "%s %s %s",
                    request.method,
                    redact(request.path),
                    response.status_code,
                    extra={
                        "method": request.method,
                        "path": redact(request.path),
                        "status": response.status_code,
                        "duration_ms": round((time.monotonic() - started) * 1000, 1),
                        "org_id": str(org.pk) if org is not None else None,
                    },
                )
            return response
        finally:
            request_id_var.reset(token)


def sentry_before_send(event: dict, hint: dict) -> dict:
    """What reaches Sentry (SENTRY_DSN): no request body, cookies or headers — a chat post's
    body is a participant's words — and no participant or invitation token in any URL."""
    request = event.get("request") or {}
    for key in ("data", "cookies", "headers", "query_string"):
        request.pop(key, None)
    if "url" in request:
        request["url"] = redact(request["url"])
    for crumb in (event.get("breadcrumbs") or {}).get("values", []):
        if isinstance(crumb.get("message"), str):
            crumb["message"] = redact(crumb["message"])
        data = crumb.get("data") or {}
        if isinstance(data.get("url"), str):
            data["url"] = redact(data["url"])
    if isinstance(event.get("transaction"), str):
        event["transaction"] = redact(event["transaction"])
    if isinstance(event.get("message"), str):
        event["message"] = redact(event["message"])
    logentry = event.get("logentry") or {}
    for key in ("message", "formatted"):
        if isinstance(logentry.get(key), str):
            logentry[key] = redact(logentry[key])
    return event
