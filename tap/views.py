"""Platform endpoints that belong to no app."""

from django.db import connections
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


def _database_ok() -> bool:
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception:
        return False


def _redis_ok() -> bool:
    from django.conf import settings  # noqa: PLC0415
    from redis import Redis  # noqa: PLC0415

    try:
        client = Redis.from_url(settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5)
        return bool(client.ping())
    except Exception:
        return False


@never_cache
@require_GET
def healthz(request):
    checks = {"database": _database_ok(), "redis": _redis_ok()}
    healthy = all(checks.values())
    return JsonResponse(
        {"status": "ok" if healthy else "unavailable", "checks": checks},
        status=200 if healthy else 503,
    )


@never_cache
@require_GET
def ping(request):
    """Liveness without dependencies: no database or Redis query of its own, so it measures
    the server and middleware stack alone (the benchmarks' "bare view" ceiling)."""
    return HttpResponse("pong", content_type="text/plain")
