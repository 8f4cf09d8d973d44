"""Structured logging: the request id, org id and task id ride along on every record.

Context lives in contextvars (never thread-locals, which leak between requests)."""

import logging
import uuid
from contextvars import ContextVar

request_id_var: ContextVar[str | None] = ContextVar("tap_request_id", default=None)
task_id_var: ContextVar[str | None] = ContextVar("tap_task_id", default=None)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        from tap.tenancy import current_org_id  # noqa: PLC0415 - avoid an import cycle

        record.request_id = request_id_var.get()
        record.task_id = task_id_var.get()
        org_id = current_org_id()
        record.org_id = str(org_id) if org_id else None
        return True


class RequestContextMiddleware:
    """Gives each request an id (echoed as X-Request-ID) for the logs."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = request_id_var.set(uuid.uuid4().hex)
        try:
            response = self.get_response(request)
            response["X-Request-ID"] = request_id_var.get()
            return response
        finally:
            request_id_var.reset(token)
