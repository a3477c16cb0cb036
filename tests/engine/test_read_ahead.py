"""Reading ahead: the next table is made on a thread of its own while the caller works on the
one it has; order, errors and the end of the input are those of the plain iteration."""

from __future__ import annotations

import threading

import pyarrow as pa
import pytest

from unbacked.engine.spill import read_ahead


def _tables(n: int, log: list[str], fail_at: int | None = None):
    for i in range(n):
        if i == fail_at:
            raise OSError(f"disk gone at {i}")
        log.append(f"made {i} on {threading.current_thread().name}")
        yield pa.table({"i": [i]})


def test_tables_come_in_order_and_the_next_is_made_while_the_caller_holds_one():
    log: list[str] = []
    got = []
    for table in read_ahead(_tables(4, log)):
        i = table["i"][0].as_py()
        got.append(i)
        if i < 3:  # the next one is being made meanwhile: wait for it to be logged
            for _ in range(1000):
                if any(entry.startswith(f"made {i + 1} ") for entry in log):
                    break
                threading.Event().wait(0.005)
            assert any(entry.startswith(f"made {i + 1} ") for entry in log)
        log.append(f"used {i}")
    assert got == [0, 1, 2, 3]
    assert all("read-ahead" in entry for entry in log if entry.startswith("made"))
    # table 1 was made before table 0 was used up
    made_1 = next(k for k, entry in enumerate(log) if entry.startswith("made 1 "))
    assert made_1 < log.index("used 0")


def test_an_error_making_a_table_is_raised_where_that_table_is_asked_for():
    log: list[str] = []
    got = []
    with pytest.raises(OSError, match="disk gone at 2"):
        for table in read_ahead(_tables(5, log, fail_at=2)):
            got.append(table["i"][0].as_py())
    assert got == [0, 1]


def test_no_tables():
    assert list(read_ahead(iter([]))) == []


def test_a_caller_that_stops_does_not_wait_for_the_table_being_made_which_is_then_closed():
    closed = threading.Event()
    release = threading.Event()  # holds the second table back until the caller has stopped

    def tables():
        try:
            yield pa.table({"i": [0]})
            release.wait(10.0)
            yield pa.table({"i": [1]})
        finally:
            closed.set()

    with pytest.raises(RuntimeError, match="caller failed"):
        for _ in read_ahead(tables()):
            raise RuntimeError("caller failed")
    # the caller's error came out while the second table was still being made
    assert not closed.is_set()
    release.set()
    assert closed.wait(5.0)  # the thread finished it, then closed the input


def test_the_run_report_totals_can_be_taken_while_the_reader_thread_adds_files():
    """A reader on another thread (here, read ahead) adds a file to the report per input while
    the caller sums the report's records for every table, as a progress line does: the report
    takes its totals under the lock its writers take."""
    from unbacked.runreport import RunReport

    report = RunReport()

    def tables():
        for t in range(40):
            for i in range(2000):
                report.file(f"in-{t}-{i}.jsonl", "unbacked-jsonl")
            yield pa.table({"t": [t]})

    totals = [report.records + report.events + report.skipped for _ in read_ahead(tables())]
    assert len(totals) == 40
    assert len(report.files) == 80_000


def test_progress_sums_the_records_of_every_file_a_few_times_a_second(monkeypatch, tmp_path):
    """A progress line after every table read summed every file's records: a run over
    thousands of small files was quadratic in them. It now sums at most every quarter second
    (``RunReport.records_lately``), and what it shows was true that recently."""
    from unbacked import runreport
    from unbacked.engine.local import read_inputs
    from unbacked.runreport import RunReport

    clock = [100.0]
    monkeypatch.setattr(runreport.time, "monotonic", lambda: clock[0])
    report = RunReport()
    report.file("a").records = 5
    assert report.records_lately() == 5
    report.file("b").records = 7
    assert report.records_lately() == 5  # summed 0 s ago
    clock[0] += 0.3
    assert report.records_lately() == 12

    sums = []
    real = RunReport.records
    monkeypatch.setattr(RunReport, "records", property(lambda r: sums.append(1) or real.fget(r)))
    from tests.support.events import events, launch
    from unbacked.sources.native import write_events

    for i in range(30):  # a table each
        write_events(events([launch(f"p{i}", "/bin/sh", host="h")]), tmp_path / f"{i}.parquet")
    seen: list[int] = []  # the clock stands still: one sum for the whole read
    with read_inputs([tmp_path], RunReport(), lambda n, e, r: seen.append(r), memory_events=0):
        pass
    assert len(seen) == 30
    assert len(sums) == 1, len(sums)  # not once per table
