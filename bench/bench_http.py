"""Bare view ceiling: the most requests per second the production server can answer.

Runs gunicorn exactly as `make run` does (2 workers x 4 threads, DEBUG off) and drives
`GET /ping` — a view that does no work of its own — from 16 keep-alive clients on loopback
for a fixed time. Every request still passes through the whole middleware stack, including
TenancyMiddleware's request transaction (BEGIN, set_config, COMMIT), so this is the ceiling
for any page of the app on this machine: other HTTP benchmarks of the same run are best read
as a fraction of it (`bench.lib.RESULTS["http"]`).

The load generator runs on the same machine and shares its cores with the server;
`client_cpu_pct` says how much of them it took (100 = one core).
"""

from __future__ import annotations

from bench.lib import load, serve

ORDER = 0  # runs first: later HTTP benchmarks compare themselves with this ceiling
CONCURRENCY = 16
WARMUP_S = 1.0
DURATION_S = 8.0


def run() -> dict:
    with serve(name="gunicorn-http") as server:
        figures = load(f"{server.url}/ping", CONCURRENCY, DURATION_S, warmup=WARMUP_S, timeout=10.0)
    return {"server": f"gunicorn {server.workers}w x {server.threads}t", **figures}
