"""Platform endpoints that belong to no app: the probes and the benchmarks' bare view.

/healthz  liveness: 200 while this process serves requests. No dependency is checked, so a
          database or Redis outage never makes an orchestrator restart healthy web processes.
/readyz   readiness: database, Redis, and no unapplied migrations → 200; else 503 naming the
          failed check, so a load balancer stops sending traffic until it recovers.

Both are answered by `ProbeMiddleware`, ahead of sessions, authentication and the request
transaction that TenancyMiddleware opens: with the database down that transaction cannot even
begin, and liveness must not depend on it."""

from __future__ import annotations

import logging

from django.conf import settings
from django.db import connections
from django.db.migrations.executor import MigrationExecutor
from django.http import HttpResponse, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

logger = logging.getLogger(__name__)

# Once every migration is applied it stays so for the life of the process (migrations are
# forward-only and the code cannot change under it): check the plan until it first passes.
_migrations_applied = False


def _database_ok() -> bool:
    try:
        with connections["default"].cursor() as cursor:
            cursor.execute("SELECT 1")
        return True
    except Exception as exc:  # one line per failed probe, not a traceback every few seconds
        logger.warning("readyz: the database did not answer: %s", type(exc).__name__)
        return False


def _redis_ok() -> bool:
    from redis import Redis  # noqa: PLC0415

    try:
        client = Redis.from_url(settings.REDIS_URL, socket_timeout=0.5, socket_connect_timeout=0.5)
        return bool(client.ping())
    except Exception as exc:
        logger.warning("readyz: Redis did not answer: %s", type(exc).__name__)
        return False


def unapplied_migrations(using: str = "default") -> list[str]:
    """'app.name' of every migration in the code that the database has not recorded."""
    executor = MigrationExecutor(connections[using])
    plan = executor.migration_plan(executor.loader.graph.leaf_nodes())
    return [f"{migration.app_label}.{migration.name}" for migration, _backwards in plan]


def _migrations_ok() -> bool:
    global _migrations_applied  # a one-way latch, see above
    if _migrations_applied:
        return True
    try:
        pending = unapplied_migrations()
    except Exception as exc:
        logger.warning("readyz: could not read the migration state: %s", type(exc).__name__)
        return False
    if pending:
        logger.warning("readyz: unapplied migrations", extra={"migrations": pending[:20]})
        return False
    _migrations_applied = True
    return True


def readiness_checks() -> dict[str, bool]:
    database = _database_ok()
    return {
        "database": database,
        "redis": _redis_ok(),
        # Without a database there is no migration state to read.
        "migrations": database and _migrations_ok(),
    }


@never_cache
@require_GET
def healthz(request):
    return JsonResponse({"status": "ok"})


@never_cache
@require_GET
def readyz(request):
    checks = readiness_checks()
    failed = [name for name, ok in checks.items() if not ok]
    return JsonResponse(
        {"status": "unavailable" if failed else "ok", "checks": checks, "failed": failed},
        status=503 if failed else 200,
    )


@never_cache
@require_GET
def ping(request):
    """Liveness without dependencies: no database or Redis query of its own, so it measures
    the server and middleware stack alone (the benchmarks' "bare view" ceiling)."""
    return HttpResponse("pong", content_type="text/plain")


PROBES = {"/healthz": healthz, "/readyz": readyz}


class ProbeMiddleware:
    """Answers /healthz and /readyz before sessions, authentication and the tenant
    transaction (see the module docstring). Sits right after SecurityMiddleware."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        probe = PROBES.get(request.path_info)
        if probe is not None:
            return probe(request)
        return self.get_response(request)
