"""The ingest pipeline's moving parts: batches folded while the file is still being read (on
the writer thread), keys repeated across batches summed into their first row, fresh days
inserted without merging, and a failure on the writer thread failing the whole run."""

from __future__ import annotations

import sys
import threading

import pytest
from django.db import connection

from metrics import ingest as ingest_module
from metrics.models import DailyDeveloperMetric
from tap.tenancy import org_context
from tests.metrics.helpers import copilot_record, ingest, ndjson, rows, write
from tests.metrics.test_rollups import assert_rollups_exact


@pytest.fixture
def tiny_batches(monkeypatch):
    """Batches of 2 rows, folded every 4: a small file crosses every boundary."""
    monkeypatch.setattr(ingest_module, "BATCH", 2)
    monkeypatch.setattr(ingest_module.Ingest, "FOLD_EVERY", 4)


@pytest.fixture
def time_slices():
    """The process's switch interval set to a value of the test's own, put back afterwards."""
    original = sys.getswitchinterval()
    sys.setswitchinterval(0.004)
    yield sys.getswitchinterval()
    sys.setswitchinterval(original)


def _day(n: int) -> str:
    return f"2026-04-{n:02d}"


def test_a_key_repeated_in_a_later_batch_is_summed_into_the_first(org_a, tmp_path, tiny_batches):
    records = [copilot_record(f"dev{i}", _day(1)) for i in range(6)]
    # mona's day 1 again, after several batches (and a fold) have gone by.
    records.append(copilot_record("dev0", _day(1), code_generation_activity_count=5))
    run = ingest(org_a, write(tmp_path, "u.ndjson", ndjson(records)))
    assert run.status == "succeeded", run.message
    assert (run.rows_new, run.rows_replaced, run.rows_unchanged) == (6, 0, 0)
    (dev0,) = rows(org_a, developer_identity__github_login="dev0")
    assert dev0.suggestions == 15
    assert dev0.extras["by_ide"] == {"vscode": [20, 0, 0, 0]}
    assert len(rows(org_a)) == 6


def test_a_part_that_repeats_every_key_is_summed_a_batch_at_a_time(
    org_a, tmp_path, tiny_batches, monkeypatch
):
    part1 = [copilot_record(f"dev{i}", _day(1)) for i in range(7)]
    part2 = [copilot_record(f"dev{i}", _day(1), code_generation_activity_count=i) for i in range(7)]
    # The repeats waiting in memory never outgrow a batch, whatever the part's size.
    waiting = []
    metric = ingest_module.Ingest._metric

    def counted(self, row):
        metric(self, row)
        waiting.append(len(self.repeats))

    monkeypatch.setattr(ingest_module.Ingest, "_metric", counted)
    run = ingest(
        org_a,
        write(tmp_path, "p1.ndjson", ndjson(part1)),
        write(tmp_path, "p2.ndjson", ndjson(part2)),
    )
    assert run.status == "succeeded", run.message
    assert max(waiting) < ingest_module.BATCH
    assert (run.rows_new, run.rows_replaced, run.rows_unchanged) == (7, 0, 0)
    # Summed in chunks of BATCH (a server-side cursor): every key, once.
    assert sorted(r.suggestions for r in rows(org_a)) == [10 + i for i in range(7)]
    assert_rollups_exact(org_a)


@pytest.mark.parametrize("batches", ["tiny", "default"])
def test_a_report_in_parts_uploaded_again_changes_nothing(org_a, tmp_path, monkeypatch, batches):
    if batches == "tiny":
        monkeypatch.setattr(ingest_module, "BATCH", 2)
        monkeypatch.setattr(ingest_module.Ingest, "FOLD_EVERY", 4)
    part1 = [copilot_record(f"dev{i}", _day(1)) for i in range(5)]
    part2 = [
        copilot_record("dev0", _day(1), code_generation_activity_count=3),
        copilot_record("dev1", _day(1), code_generation_activity_count=3),
    ]
    paths = (
        write(tmp_path, "p1.ndjson", ndjson(part1)),
        write(tmp_path, "p2.ndjson", ndjson(part2)),
    )
    first = ingest(org_a, *paths)
    stored = {(r.pk, r.ingestion_run_id, r.suggestions, r.updated_at) for r in rows(org_a)}
    # dev0's first part (10) differs from the stored sum (13) until the second part is added.
    again = ingest(org_a, *paths)
    assert again.status == "succeeded", again.message
    assert (again.rows_new, again.rows_replaced, again.rows_unchanged) == (0, 0, 5)
    assert "Nothing changed" in again.message
    assert {(r.pk, r.ingestion_run_id, r.suggestions, r.updated_at) for r in rows(org_a)} == stored
    assert all(r.ingestion_run_id == first.pk for r in rows(org_a))
    assert_rollups_exact(org_a)
    # A second part that differs for dev1 only: dev1's day is revised, dev0's put back (both
    # written by one statement).
    part2[1]["code_generation_activity_count"] = 4
    revised = ingest(org_a, paths[0], write(tmp_path, "p2-revised.ndjson", ndjson(part2)))
    assert revised.status == "succeeded", revised.message
    assert (revised.rows_new, revised.rows_replaced, revised.rows_unchanged) == (0, 1, 4)
    (dev0,) = rows(org_a, developer_identity__github_login="dev0")
    assert (dev0.suggestions, dev0.ingestion_run_id) == (13, first.pk)
    (dev1,) = rows(org_a, developer_identity__github_login="dev1")
    assert (dev1.suggestions, dev1.ingestion_run_id) == (14, revised.pk)
    assert_rollups_exact(org_a)


def test_a_repeat_of_an_unchanged_row_makes_it_replaced(org_a, tmp_path, tiny_batches):
    first = [copilot_record(f"dev{i}", _day(1)) for i in range(5)]
    ingest(org_a, write(tmp_path, "a.ndjson", ndjson(first)))
    # The same day again: dev0's first part equals what is stored (unchanged), its second part
    # arrives batches later and must be added, not lost.
    again = [*first, copilot_record("dev0", _day(1), code_generation_activity_count=7)]
    run = ingest(org_a, write(tmp_path, "b.ndjson", ndjson(again)))
    assert run.status == "succeeded", run.message
    assert (run.rows_new, run.rows_replaced, run.rows_unchanged) == (0, 1, 4)
    (dev0,) = rows(org_a, developer_identity__github_login="dev0")
    assert dev0.suggestions == 17
    assert str(dev0.ingestion_run_id) == str(run.pk)


def test_fresh_days_and_revised_days_in_one_run(org_a, tmp_path, tiny_batches):
    ingest(org_a, write(tmp_path, "a.ndjson", ndjson([copilot_record("dev0", _day(1))])))
    records = [copilot_record("dev0", _day(1), code_generation_activity_count=3)]
    records += [copilot_record(f"dev{i}", _day(d)) for d in (2, 3) for i in range(4)]
    run = ingest(org_a, write(tmp_path, "b.ndjson", ndjson(records)))
    assert run.status == "succeeded", run.message
    assert (run.rows_new, run.rows_replaced, run.rows_unchanged) == (8, 1, 0)
    assert [r.suggestions for r in rows(org_a, date=_day(1))] == [3]
    assert len(rows(org_a)) == 9
    assert_rollups_exact(org_a)


def test_the_same_file_twice_in_small_batches_changes_nothing(org_a, tmp_path, tiny_batches):
    records = [copilot_record(f"dev{i}", _day(d)) for d in (1, 2) for i in range(5)]
    path = write(tmp_path, "u.ndjson", ndjson(records))
    assert ingest(org_a, path).rows_new == 10
    again = ingest(org_a, path)
    assert (again.rows_new, again.rows_replaced, again.rows_unchanged) == (0, 0, 10)
    assert "nothing changed" in again.message.lower()
    assert_rollups_exact(org_a)


def test_the_rollups_take_a_runs_rows_once_at_the_end(org_a, tmp_path, tiny_batches, monkeypatch):
    """The run's folds leave the rollups alone (its rows wait, migration 0010); the end of the
    run applies them, and later statements of the transaction update the rollups directly."""
    seen = []
    real = ingest_module.Ingest._fold

    def fold(self, cursor):
        real(self, cursor)
        cursor.execute("SELECT count(*) FROM daily_tool_rollups")
        seen.append(cursor.fetchone()[0])

    monkeypatch.setattr(ingest_module.Ingest, "_fold", fold)
    records = [copilot_record(f"dev{i}", _day(d)) for d in (1, 2, 3) for i in range(4)]
    run = ingest(org_a, write(tmp_path, "u.ndjson", ndjson(records)))
    assert run.rows_new == 12
    assert seen == [0, 0, 0]
    assert_rollups_exact(org_a)
    with org_context(org_a.id), connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('tap.rollups_pending', true)")
        assert cursor.fetchone()[0] != "on"


def test_a_run_shortens_the_time_slices_while_its_writer_lives(
    org_a, tmp_path, tiny_batches, monkeypatch, time_slices
):
    seen = []
    real = ingest_module.Ingest._fold

    def fold(self, cursor):
        seen.append(sys.getswitchinterval())
        real(self, cursor)

    monkeypatch.setattr(ingest_module.Ingest, "_fold", fold)
    records = [copilot_record(f"dev{i}", _day(d)) for d in (1, 2) for i in range(4)]
    assert ingest(org_a, write(tmp_path, "u.ndjson", ndjson(records))).rows_new == 8
    assert seen
    assert seen == pytest.approx([ingest_module.TimeSlices.SHORT] * len(seen))
    assert sys.getswitchinterval() == time_slices


def test_time_slices_stay_short_until_the_last_writer_stops(time_slices):
    """Two writers at once (threads of one worker): the first to stop leaves them short."""
    first, second = ingest_module.Writer(None), ingest_module.Writer(None)
    first.close()
    assert sys.getswitchinterval() == pytest.approx(ingest_module.TimeSlices.SHORT)
    second.close()
    assert sys.getswitchinterval() == time_slices
    second.close()  # closing twice changes nothing
    assert sys.getswitchinterval() == time_slices


def test_a_failure_before_the_run_reads_stops_its_writer(org_a, tmp_path, monkeypatch, time_slices):
    def broken(*args, **kwargs):
        raise RuntimeError("identities could not be loaded")

    monkeypatch.setattr(ingest_module.Identities, "__init__", broken)
    run = ingest(org_a, write(tmp_path, "u.ndjson", ndjson([copilot_record("mona", _day(1))])))
    assert run.status == "failed"
    assert not [t for t in threading.enumerate() if t.name == "metrics-writer"]
    assert sys.getswitchinterval() == time_slices


def test_a_failure_on_the_writer_thread_fails_the_run_and_stores_nothing(
    org_a, tmp_path, tiny_batches, monkeypatch, time_slices
):
    real = ingest_module._copy_job
    calls = []

    def failing(table, text):
        calls.append(table)
        if len(calls) == 3:
            return lambda cursor: cursor.execute("SELECT 1/0")
        return real(table, text)

    monkeypatch.setattr(ingest_module, "_copy_job", failing)
    records = [copilot_record(f"dev{i}", _day(1)) for i in range(10)]
    run = ingest(org_a, write(tmp_path, "u.ndjson", ndjson(records)))
    assert run.status == "failed"
    assert "internal error" in run.message
    assert rows(org_a) == []
    # The writer thread is gone (the time slices as they were), and the connection still works.
    assert not [t for t in threading.enumerate() if t.name == "metrics-writer"]
    assert sys.getswitchinterval() == time_slices
    with org_context(org_a.id):
        assert DailyDeveloperMetric.objects.count() == 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        assert cursor.fetchone() == (1,)


@pytest.mark.django_db(transaction=True, databases=["default", "service", "owner"])
def test_two_runs_of_one_organisation_at_once_both_land(org_a, tmp_path):
    """Runs of one organisation take turns (its writer lock): the second waits for the first
    to commit, then finds its developers and merges with its rows instead of colliding with
    them (both used to create the same developers, and one failed)."""
    a = [copilot_record(f"dev{i}", _day(1)) for i in range(6)]
    b = [copilot_record(f"dev{i}", _day(1), code_generation_activity_count=3) for i in range(3, 9)]
    paths = [write(tmp_path, "a.ndjson", ndjson(a)), write(tmp_path, "b.ndjson", ndjson(b))]
    results = {}
    start = threading.Barrier(2)

    def work(path):
        start.wait()
        try:
            results[path.name] = ingest(org_a, path)
        finally:
            connection.close()

    threads = [threading.Thread(target=work, args=(p,)) for p in paths]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    runs = sorted(results.values(), key=lambda r: r.finished_at)
    assert [r.status for r in runs] == ["succeeded", "succeeded"], [r.message for r in runs]
    # The first run found an empty day; the second merged: 3 keys new, 3 replaced.
    assert (runs[0].rows_new, runs[0].rows_replaced) == (6, 0)
    assert (runs[1].rows_new, runs[1].rows_replaced) == (3, 3)
    stored = {r.developer_identity.github_login: r.suggestions for r in rows(org_a)}
    assert len(stored) == 9
    expected_from_b = runs[1].file_name == "b.ndjson"
    assert stored["dev4"] == (3 if expected_from_b else 10)
    assert stored["dev0"] == 10
    assert stored["dev8"] == 3
