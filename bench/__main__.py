"""Run the benchmarks: `python -m bench [NAME ...]` (`make bench` runs them all).

A benchmark is a module `bench/bench_<name>.py` with a `run() -> dict` returning its figures
(numbers, strings, or nested dicts of them); its docstring says what it measures and why.
An optional module constant `ORDER` (default 100) runs it earlier; ties go by name.

Each benchmark runs once, in this process; one that raises is reported as FAILED and makes
the exit code 1, and the rest still run. At the end a table of all figures is printed and
bench/results/latest.json maps each benchmark's name to its figures. Benchmarks never assert
timings: they report, and a person reads the figures.

    python -m tap.devenv exec .venv/bin/python -m bench          # all
    python -m tap.devenv exec .venv/bin/python -m bench rls      # a subset, by name
    python -m bench --list
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import sys
import time
import traceback
from pathlib import Path

from bench.lib import RESULTS, RESULTS_DIR

BENCH_DIR = Path(__file__).resolve().parent
PREFIX = "bench_"


def available() -> list[str]:
    return sorted(
        info.name.removeprefix(PREFIX)
        for info in pkgutil.iter_modules([str(BENCH_DIR)])
        if info.name.startswith(PREFIX)
    )


def summary(module) -> str:
    doc = (module.__doc__ or "").strip()
    return doc.splitlines()[0] if doc else ""


def flatten(figures: dict, prefix: str = "") -> list[tuple[str, object]]:
    rows: list[tuple[str, object]] = []
    for key, value in figures.items():
        if isinstance(value, dict) and value:
            rows.extend(flatten(value, f"{prefix}{key}."))
        else:
            rows.append((f"{prefix}{key}", value))
    return rows


def fmt(value: object) -> str:
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:.4g}"
    if isinstance(value, int):
        return f"{value:,}"
    if value is None:
        return "-"
    return str(value)


def table(results: dict[str, dict], elapsed: dict[str, float], load: dict[str, float]) -> str:
    rows: list[tuple[str, str, str]] = []
    for name, figures in results.items():
        status = "FAILED" if figures.get("failed") else "ok"
        note = f"[{status}, {elapsed[name]:.1f} s"
        note += f", load avg {load[name]:.2f}]" if name in load else "]"
        rows.append((name, note, ""))
        rows.extend(("", key, fmt(value)) for key, value in flatten(figures))
    headers = ("benchmark", "figure", "value")
    widths = [max(len(r[i]) for r in [headers, *rows]) for i in range(3)]
    line = "  ".join("-" * w for w in widths)
    out = [
        "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)),
        line,
    ]
    for i, (name, key, value) in enumerate(rows):
        if name and i:
            out.append(line)
        out.append(f"{name.ljust(widths[0])}  {key.ljust(widths[1])}  {value.rjust(widths[2])}")
    return "\n".join(out)


def main(argv: list[str]) -> int:
    names = available()
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("names", nargs="*", metavar="NAME", help=f"any of: {', '.join(names)}")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)

    wanted = [n.removeprefix(PREFIX).removesuffix(".py") for n in args.names] or names
    unknown = sorted(set(wanted) - set(names))
    if unknown:
        parser.error(f"no such benchmark: {', '.join(unknown)} (available: {', '.join(names)})")

    results: dict[str, dict] = {}
    elapsed: dict[str, float] = {}
    # The 1-minute load average as each benchmark starts: on a shared machine, a high value
    # next to an odd figure says "run it again" (2 cores: 2.0 means both were already busy).
    load: dict[str, float] = {}
    modules = {}
    for name in wanted:
        try:
            modules[name] = importlib.import_module(f"bench.{PREFIX}{name}")
        except Exception as exc:
            traceback.print_exc()
            results[name] = {"failed": True, "error": f"import: {type(exc).__name__}: {exc}"}
            elapsed[name] = 0.0
    order = sorted(modules, key=lambda n: (getattr(modules[n], "ORDER", 100), n))

    if args.list:
        for name in names:
            print(f"{name:12} {summary(modules[name]) if name in modules else '(import failed)'}")
        return 0

    for name in order:
        module = modules[name]
        print(f"== {name}: {summary(module)}", flush=True)
        load[name] = os.getloadavg()[0]
        started = time.monotonic()
        try:
            figures = module.run()
            if not isinstance(figures, dict):
                raise TypeError(f"run() returned {type(figures).__name__}, not dict")
        except Exception as exc:
            traceback.print_exc()
            figures = {"failed": True, "error": f"{type(exc).__name__}: {exc}"}
        elapsed[name] = time.monotonic() - started
        results[name] = figures
        RESULTS[name] = figures
        print(f"   {'FAILED' if figures.get('failed') else 'done'} in {elapsed[name]:.1f} s")

    ordered = {name: results[name] for name in [*order, *results] if name in results}
    print()
    print(f"machine: {os.cpu_count()} cores")
    print(table(ordered, elapsed, load))
    RESULTS_DIR.mkdir(exist_ok=True)
    latest = RESULTS_DIR / "latest.json"
    latest.write_text(json.dumps(ordered, indent=2, default=str) + "\n")
    print(f"\nwrote {latest.relative_to(BENCH_DIR.parent)}")
    failed = [name for name, figures in ordered.items() if figures.get("failed")]
    if failed:
        print(f"FAILED: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
