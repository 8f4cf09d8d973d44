"""The moving parts of `make run`, as separate processes a fault test may break.

`Stack` runs gunicorn (production settings), a Celery worker and the outbox relay against the
test database, with a private Redis (`PrivateRedis`) as broker and cache, so a test can stop
Redis or SIGKILL the worker without disturbing anything else on the machine.
`PrivatePostgres` is a throw-away PostgreSQL cluster for the test that restarts the database.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.lib import PRODUCTION_ENV, ROOT, free_port, serve
from tap import devenv

LOGS = ROOT / ".data" / "fault-logs"


def wait_for(predicate, *, timeout: float = 60.0, interval: float = 0.2, what: str = ""):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what or predicate}")


class PrivateRedis:
    """A Redis of the test's own on a free port, without persistence: a restart loses what
    was queued, the harshest case for the outbox."""

    def __init__(self) -> None:
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                devenv.redis_bin(),
                *("--port", str(self.port), "--bind", "127.0.0.1"),
                *("--save", "", "--appendonly", "no"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(lambda: devenv.port_open(self.port), timeout=10, what="redis to listen")

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)
        wait_for(lambda: not devenv.port_open(self.port), timeout=10, what="redis to stop")


class Stack:
    """gunicorn + Celery worker + outbox relay, sharing one environment."""

    def __init__(self, *, redis_url: str, env: dict[str, str] | None = None) -> None:
        LOGS.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            **PRODUCTION_ENV,
            "PYTHONUNBUFFERED": "1",
            "REDIS_URL": redis_url,
            **(env or {}),
        }
        self.processes: dict[str, subprocess.Popen] = {}
        self._server = None
        self.url = ""

    def __enter__(self) -> Stack:
        self._server = serve(name="fault-gunicorn", env=self.env, ready_path="/healthz")
        self.url = self._server.__enter__().url
        self.start_worker()
        self.start("relay", [sys.executable, "manage.py", "outbox_relay", "--poll", "0.2"])
        return self

    def __exit__(self, *exc) -> None:
        for name in list(self.processes):
            self.kill(name, signal.SIGTERM)
        self._server.__exit__(*exc)

    def start(self, name: str, command: list[str]) -> subprocess.Popen:
        log = (LOGS / f"{name}.log").open("ab")
        process = subprocess.Popen(
            command,
            cwd=ROOT,
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: a signal reaches its children
        )
        self.processes[name] = process
        return process

    def start_worker(self, name: str = "worker") -> subprocess.Popen:
        return self.start(
            name,
            [
                sys.executable,
                "-m",
                "celery",
                "-A",
                "tap",
                "worker",
                "--queues",
                "default,email,ai,analysis,ingest",
                "--concurrency",
                "2",
                "--hostname",
                f"{name}-{os.getpid()}@%h",
                "--without-gossip",
                "--without-mingle",
                "--loglevel",
                "INFO",
            ],
        )

    def kill(self, name: str, sig: int = signal.SIGKILL) -> None:
        """Signal the whole process group (a Celery worker's pool children too)."""
        process = self.processes.pop(name)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        try:
            process.wait(20)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait(5)


class PrivatePostgres:
    """A PostgreSQL cluster of the test's own (the embedded binaries), provisioned with
    Tap's roles like `make run`'s and migrated, which the test may stop and start."""

    DB = "tap_fault"

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="tap-fault-pg-"))
        self.data = self.dir / "data"
        self.socket = self.dir / "sock"
        self.secrets = devenv.load_secrets()

    def _as_postgres(self) -> dict:
        return devenv._drop_root_kwargs()

    def init(self) -> None:
        self.data.mkdir(mode=0o700)
        self.socket.mkdir(mode=0o700)
        run_as = self._as_postgres()
        if run_as:
            for path in (self.dir, self.data, self.socket):
                os.chown(path, run_as["user"], run_as["group"])
        subprocess.run(
            [
                *(devenv.pg_bin("initdb"), "-D", str(self.data), "-U", "postgres"),
                *("--auth-local=trust", "--auth-host=scram-sha-256", "-E", "UTF8", "--locale=C"),
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            **run_as,
        )
        self.start()
        conninfo = f"host={self.socket} port={self.port} user=postgres dbname=postgres"
        devenv.provision(conninfo, self.secrets, [self.DB])
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
            cwd=ROOT,
            env={**os.environ, **self.env()},
            check=True,
        )

    def env(self) -> dict[str, str]:
        def url(role: str) -> str:
            return devenv.db_url(role, self.secrets[role], self.port, self.DB)

        return {
            "DATABASE_URL": url(devenv.APP_ROLE),
            "DATABASE_SERVICE_URL": url(devenv.SERVICE_ROLE),
            "DATABASE_OWNER_URL": url(devenv.MIGRATOR_ROLE),
        }

    def _ctl(self, *args: str) -> None:
        subprocess.run(
            [devenv.pg_bin("pg_ctl"), *args, "-D", str(self.data), "-w"],
            check=True,
            stdout=subprocess.DEVNULL,
            **self._as_postgres(),
        )

    def start(self) -> None:
        options = f"-p {self.port} -k {self.socket} -c listen_addresses=127.0.0.1"
        self._ctl("start", "-l", str(self.dir / "postgres.log"), "-o", options)

    def stop(self, mode: str = "fast") -> None:
        self._ctl("stop", "-m", mode)

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):
            self.stop("immediate")
        shutil.rmtree(self.dir, ignore_errors=True)
