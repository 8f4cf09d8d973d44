"""Benchmarks: `make bench` runs every bench_*.py here (see bench/__main__.py)."""
