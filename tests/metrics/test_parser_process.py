"""A run's files are parsed in a process of their own (metrics.parsers.apart): items come back
as in one process, failures fail the run, and the process never outlives the run."""

from __future__ import annotations

import multiprocessing
import os

import pytest

from metrics.parsers import MetricRow, Refused, Rejected, apart, copilot
from metrics.parsers.apart import ParserProcessError, parsed_apart
from tests.metrics.helpers import copilot_record, ingest, ndjson, rows, write

LIMIT = 1 << 30


@pytest.fixture
def parsers(monkeypatch, tmp_path):
    """The parser processes started during the test: a function giving their pids."""
    pids = tmp_path / "parser-pids"
    real = apart._parse

    def parse(*args):
        with open(pids, "a") as out:
            out.write(f"{os.getpid()}\n")
        real(*args)

    monkeypatch.setattr(apart, "_parse", parse)
    return lambda: [int(pid) for pid in pids.read_text().split()]


def assert_gone(pids: list[int]) -> None:
    """Each one ended and reaped: no such process (not even a zombie) any more."""
    assert pids
    for pid in pids:
        assert pid != os.getpid()
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def _records(n: int) -> list[dict]:
    return [copilot_record(f"dev{i}", "2026-04-01") for i in range(n)]


def test_items_come_back_in_order_with_their_extras_as_copy_text(tmp_path, parsers):
    records = _records(2500)
    del records[7]["user_login"], records[7]["user_id"]  # no identifier: rejected, with its line
    records[9]["totals_by_ide"][0]["ide"] = "vs\\code\x00"  # a NUL: rejected too
    path = write(tmp_path, "u.ndjson", ndjson(records))
    with parsed_apart([path], max_decompressed_bytes=LIMIT) as files:
        parsed = next(files)
        assert parsed.format == "copilot_users"
        items = list(parsed.items)
        assert parsed.position() == path.stat().st_size
    assert_gone(parsers())
    assert len(items) == 2500
    assert [(i.line, type(i)) for i in items if isinstance(i, Rejected)] == [
        (8, Rejected),
        (10, Rejected),
    ]
    metric = items[0]
    assert isinstance(metric, MetricRow)
    assert metric.extras == {}
    assert metric.extras_text.startswith('{"interactions":')
    assert [i.login for i in items[:3]] == ["dev0", "dev1", "dev2"]


def test_a_refused_file_is_refused_in_the_run_with_its_message(tmp_path, parsers):
    good = write(tmp_path, "a.ndjson", ndjson(_records(3)))
    unknown = write(tmp_path, "b.csv", "what,is,this\n1,2,3\n")
    with parsed_apart([good, unknown], max_decompressed_bytes=LIMIT) as files:
        assert len(list(next(files).items)) == 3
        with pytest.raises(Refused, match="does not recognise this file"):
            next(files)
    assert_gone(parsers())


def test_a_file_left_half_read_is_skipped_at_the_next(tmp_path):
    first = write(tmp_path, "a.ndjson", ndjson(_records(2500)))
    second = write(tmp_path, "b.ndjson", ndjson(_records(2)))
    with parsed_apart([first, second], max_decompressed_bytes=LIMIT) as files:
        next(next(files).items)
        parsed = next(files)
        assert parsed.format == "copilot_users"
        assert [i.line for i in parsed.items] == [1, 2]


def test_leaving_early_stops_the_parser(tmp_path, parsers):
    """A run that fails while its parser is still reading (waiting on a full pipe) does not
    wait for it."""
    path = write(tmp_path, "u.ndjson", ndjson(_records(5000)))
    with parsed_apart([path, path], max_decompressed_bytes=LIMIT) as files:
        first = next(next(files).items)
    assert isinstance(first, MetricRow)
    assert_gone(parsers())


@pytest.mark.django_db
def test_the_files_are_parsed_in_another_process(org_a, tmp_path, parsers, monkeypatch):
    """Even from a daemonic process (the ingest worker's Celery pool processes are), which
    multiprocessing would not let have children."""
    monkeypatch.setitem(multiprocessing.current_process()._config, "daemon", True)
    run = ingest(org_a, write(tmp_path, "u.ndjson", ndjson(_records(3))))
    assert run.status == "succeeded", run.message
    assert len(rows(org_a)) == 3
    assert len(parsers()) == 1
    assert_gone(parsers())


@pytest.mark.django_db
def test_a_failure_in_the_parser_process_fails_the_run_and_stores_nothing(
    org_a, tmp_path, monkeypatch, caplog, parsers
):
    real = copilot.user_row

    def user_row(line, record):
        if line == 1500:
            raise RuntimeError("the parser broke")
        return real(line, record)

    monkeypatch.setattr(copilot, "user_row", user_row)
    run = ingest(org_a, write(tmp_path, "u.ndjson", ndjson(_records(2000))))
    assert run.status == "failed"
    assert "internal error" in run.message
    assert rows(org_a) == []
    assert_gone(parsers())
    # The parser's own traceback reaches the log.
    assert "the parser broke" in caplog.text
    assert ParserProcessError.__name__ in caplog.text
