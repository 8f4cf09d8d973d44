"""Shared tools for the benchmarks: a load generator, the production server, database access.

* `load(url, concurrency, duration_or_count, …)` drives an HTTP endpoint with N keep-alive
  clients (threads + `http.client`) and returns throughput, latency percentiles and errors.
* `serve()` starts gunicorn in production mode on a free loopback port for the length of a
  `with` block, so every HTTP benchmark of a run measures the same server set-up as the
  "bare view ceiling" (bench_http) and can be read as a fraction of it.
* `pg_connect(alias)` opens a plain psycopg connection with the parameters Django would use
  for that database alias (app role, service role or owner), for database benchmarks.
* `RESULTS` holds the figures of the benchmarks that already ran in this process (filled by
  `python -m bench`), so a later benchmark can relate its figures to an earlier one's.

Everything here talks to 127.0.0.1 only.
"""

from __future__ import annotations

import contextlib
import http.client
import itertools
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = Path(__file__).resolve().parent / "results"

# name -> figures of each benchmark that finished earlier in this run (see bench/__main__.py).
RESULTS: dict[str, dict] = {}

# What production mode needs from the environment (tap/settings.py): DEBUG off, and no HTTPS
# redirect since the benchmark speaks plain HTTP on loopback. The rest of the environment
# (database, Redis, secret key) comes from `.env`, injected by `tap.devenv exec`.
PRODUCTION_ENV = {
    "DJANGO_DEBUG": "false",
    "DJANGO_SECURE_SSL_REDIRECT": "false",
    "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
}


# --- statistics -----------------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float:
    """The q-th percentile (0-100) of already sorted values, linearly interpolated."""
    if not sorted_values:
        return float("nan")
    position = (len(sorted_values) - 1) * q / 100
    lower = int(position)
    upper = min(lower + 1, len(sorted_values) - 1)
    return sorted_values[lower] + (sorted_values[upper] - sorted_values[lower]) * (position - lower)


# --- load generator -------------------------------------------------------------------------

Body = bytes | str | Callable[[int], bytes | str] | None


def load(
    url: str,
    concurrency: int,
    duration_or_count: float | int,
    method: str = "GET",
    body: Body = None,
    headers: Mapping[str, str] | None = None,
    *,
    warmup: float = 0.0,
    timeout: float = 10.0,
) -> dict:
    """Send requests to `url` from `concurrency` clients at once, as fast as answers come.

    `duration_or_count`: a float is a duration in seconds; an int is a total request count.
    Each client is a thread with its own keep-alive `http.client` connection, which it
    re-opens when the server closes it or a request fails. `body` may be bytes, str, or a
    callable taking the request's sequence number (for bodies that must differ per request).
    During `warmup` seconds requests are sent but not measured (gunicorn's workers finish
    their lazy imports and open their database connections).

    A response with status 200-399 counts as a success; any other status, a timeout or a
    connection error counts as an error. Latencies are those of the successes, in ms.
    Returns requests, errors, statuses, duration_s, requests_per_s, mean/p50/p90/p99/max_ms,
    and client_cpu_pct: the load generator's own CPU use (100 = one core), worth a look on
    a small machine, where client and server share the cores.
    """
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname not in {"127.0.0.1", "localhost", "::1"}:
        raise ValueError(f"load() drives loopback http:// URLs only, not {url!r}")
    host, port = parts.hostname, parts.port or 80
    target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    by_count = isinstance(duration_or_count, int) and not isinstance(duration_or_count, bool)
    send_headers = dict(headers or {})
    sequence = itertools.count()  # next() on itertools.count is atomic under the GIL
    measured = itertools.count()

    # Clients connect, then wait for `go`: connecting is not part of the measurement.
    connected = threading.Barrier(concurrency + 1, timeout=timeout + 5)
    go = threading.Event()
    phase = {"measure_from": 0.0, "deadline": 0.0}
    per_thread: list[dict] = []
    failures: list[BaseException] = []  # a bug in a client (e.g. a body callable): re-raised
    lock = threading.Lock()

    def connect() -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        conn.connect()
        conn.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return conn

    def client() -> None:
        try:
            measure_client()
        except Exception as exc:
            with lock:
                failures.append(exc)

    def measure_client() -> None:
        latencies: list[float] = []
        statuses: Counter = Counter()
        errors = 0
        last_finish = 0.0
        conn = None
        with contextlib.suppress(OSError):
            conn = connect()
        connected.wait()
        go.wait()
        while True:
            started = time.perf_counter()
            measuring = started >= phase["measure_from"]
            if by_count:
                if measuring and next(measured) >= duration_or_count:
                    break
            elif started >= phase["deadline"]:
                break
            n = next(sequence)
            payload = body(n) if callable(body) else body
            if isinstance(payload, str):
                payload = payload.encode()
            try:
                if conn is None:
                    conn = connect()
                conn.request(method, target, body=payload, headers=send_headers)
                response = conn.getresponse()
                response.read()
                status = response.status
                if response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                status = type(exc).__name__
                if conn is not None:
                    conn.close()
                conn = None
                time.sleep(0.01)  # a dead server must not turn into a busy loop
            finished = time.perf_counter()
            if not measuring:
                continue
            statuses[status] += 1
            last_finish = max(last_finish, finished)
            if isinstance(status, int) and 200 <= status < 400:
                latencies.append((finished - started) * 1000)
            else:
                errors += 1
        if conn is not None:
            conn.close()
        with lock:
            per_thread.append(
                {
                    "latencies": latencies,
                    "statuses": statuses,
                    "errors": errors,
                    "last": last_finish,
                }
            )

    threads = [threading.Thread(target=client, daemon=True) for _ in range(concurrency)]
    for thread in threads:
        thread.start()
    connected.wait()
    begin = time.perf_counter()
    phase["measure_from"] = begin + warmup
    phase["deadline"] = begin + warmup + (0.0 if by_count else float(duration_or_count))
    go.set()
    if warmup:
        time.sleep(warmup)
    cpu_before = time.process_time()
    for thread in threads:
        thread.join()
    cpu_used = time.process_time() - cpu_before
    if failures:
        raise failures[0]

    latencies = sorted(itertools.chain.from_iterable(t["latencies"] for t in per_thread))
    statuses = sum((t["statuses"] for t in per_thread), Counter())
    errors = sum(t["errors"] for t in per_thread)
    finished = max((t["last"] for t in per_thread), default=phase["measure_from"])
    duration = max(finished - phase["measure_from"], 1e-9)
    requests = len(latencies) + errors
    return {
        "concurrency": concurrency,
        "requests": requests,
        "errors": errors,
        "statuses": {str(k): v for k, v in sorted(statuses.items(), key=lambda kv: str(kv[0]))},
        "duration_s": round(duration, 3),
        "requests_per_s": round(requests / duration, 1),
        "mean_ms": round(sum(latencies) / len(latencies), 3) if latencies else None,
        "p50_ms": round(percentile(latencies, 50), 3) if latencies else None,
        "p90_ms": round(percentile(latencies, 90), 3) if latencies else None,
        "p99_ms": round(percentile(latencies, 99), 3) if latencies else None,
        "max_ms": round(latencies[-1], 3) if latencies else None,
        "client_cpu_pct": round(100 * cpu_used / duration, 1),
    }


# --- the production server ------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Server:
    url: str  # base URL without a trailing slash, e.g. http://127.0.0.1:40123
    pid: int
    log: Path
    workers: int
    threads: int


@contextlib.contextmanager
def serve(
    *,
    workers: int = 2,
    threads: int = 4,
    env: Mapping[str, str] | None = None,
    ready_path: str = "/ping",
    startup_timeout: float = 30.0,
    collectstatic: bool = False,
    name: str = "gunicorn",
) -> Iterator[Server]:
    """Run the app under gunicorn in production mode on a free loopback port.

    The same command as `make run`'s web process (gthread workers), with DEBUG off. Waits
    until `ready_path` answers 200, yields a `Server`, and on the way out sends SIGTERM to
    the server's process group (SIGKILL if it has not stopped after 15 s). Server output goes
    to bench/results/<name>.log. `collectstatic=True` runs collectstatic first: pages that use
    `{% static %}` need the manifest in production mode (`/ping` does not).
    """
    RESULTS_DIR.mkdir(exist_ok=True)
    port = free_port()
    server_env = {**os.environ, **PRODUCTION_ENV, "PYTHONUNBUFFERED": "1", **(env or {})}
    if collectstatic:
        subprocess.run(
            [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
            cwd=ROOT,
            env=server_env,
            check=True,
        )
    command = [
        sys.executable,
        "-m",
        "gunicorn",
        "tap.wsgi:application",
        "--bind",
        f"127.0.0.1:{port}",
        "--workers",
        str(workers),
        "--threads",
        str(threads),
        "--graceful-timeout",
        "10",
        *_no_control_socket(),
    ]
    log_path = RESULTS_DIR / f"{name}.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=server_env,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: one signal reaches the workers
        )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ready(process, port, ready_path, startup_timeout, log_path)
        yield Server(url=base, pid=process.pid, log=log_path, workers=workers, threads=threads)
    finally:
        _stop(process)


def _no_control_socket() -> list[str]:
    """gunicorn >= 25.1 opens a control socket at a fixed path in $HOME by default; a
    benchmark server must not take it from a `make run` on the same machine."""
    from gunicorn import config

    return ["--no-control-socket"] if hasattr(config, "ControlSocketDisable") else []


def _wait_until_ready(
    process: subprocess.Popen, port: int, path: str, timeout: float, log_path: Path
) -> None:
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(
                f"gunicorn exited with {process.returncode} during start-up:\n{_tail(log_path)}"
            )
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        try:
            conn.request("GET", path)
            response = conn.getresponse()
            response.read()
            if response.status == 200:
                return
            last = f"HTTP {response.status}"
        except OSError as exc:
            last = type(exc).__name__
        finally:
            conn.close()
        time.sleep(0.1)
    raise RuntimeError(f"gunicorn not ready after {timeout:.0f} s ({last}):\n{_tail(log_path)}")


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


def _tail(path: Path, lines: int = 30) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return ""


# --- database -------------------------------------------------------------------------------


def django_setup() -> None:
    """Configure Django once (settings read `.env`, as the app does) and migrate."""
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tap.settings")
    # A line per request would bury the figures (the servers benchmarks start inherit it).
    os.environ.setdefault("TAP_ACCESS_LOG", "false")
    import django
    from django.apps import apps

    if not apps.ready:
        django.setup()
        # A fresh clone's database is empty until `make run` migrates it: bring it up to
        # date, as `make run` would, so `make bench` works first thing.
        from django.core.management import call_command

        call_command("migrate", interactive=False, verbosity=0)


def pg_params(alias: str) -> dict:
    """libpq parameters for a Django database alias, exactly as Django would connect.

    Django's own connection kwargs (its cursor class, adapters context, prepare threshold)
    are dropped: `pg_connect` sets the psycopg equivalents explicitly."""
    django_setup()
    from django.db import connections

    params = dict(connections[alias].get_connection_params())
    for key in ("cursor_factory", "context", "prepare_threshold", "server_side_binding"):
        params.pop(key, None)
    return params


def pg_connect(alias: str, **kwargs):
    """A psycopg connection as Django's `alias` would open it.

    Like Django's defaults: client-side parameter binding (`ClientCursor`) and no server-side
    prepared statements, so the planner sees the same literal SQL the app sends. An alias
    with `assume_role` (the owner) runs `SET ROLE` first, as Django does."""
    import psycopg
    from django.conf import settings
    from psycopg import sql

    params = pg_params(alias)
    conn = psycopg.connect(
        **params, cursor_factory=psycopg.ClientCursor, prepare_threshold=None, **kwargs
    )
    role = settings.DATABASES[alias].get("OPTIONS", {}).get("assume_role")
    if role:
        conn.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
        if not conn.autocommit:
            conn.commit()
    return conn
