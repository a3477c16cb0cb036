"""The lake writer keeps every row it was given, also when the export stops on an error; an
interrupt (Ctrl-C) leaves no lake, nor a part of one."""

from __future__ import annotations

import pyarrow.dataset as ds
import pytest

from tests.support.events import events, launch
from unbacked.cli.export import LakeWriter, export_lake
from unbacked.runreport import RunReport


def _lake_rows(root) -> list[tuple[str, int]]:
    table = ds.dataset(sorted(map(str, root.rglob("*.parquet"))), format="parquet").to_table()
    return sorted(zip(table["process_uid"].to_pylist(), table["lake_seq"].to_pylist(), strict=True))


def test_buffered_rows_reach_the_files_when_the_writing_code_fails(tmp_path):
    rows = [launch(f"p{i}", r"C:\a\a.exe", host=f"h{i % 3}") for i in range(7)]
    with pytest.raises(RuntimeError), LakeWriter(tmp_path / "lake") as writer:
        writer.write(events(rows[:4]))
        writer.write(events(rows[4:]))
        raise RuntimeError("the reader failed")
    assert _lake_rows(tmp_path / "lake") == [(f"p{i}", i) for i in range(7)]


def test_export_keeps_what_was_read_before_a_reader_error(tmp_path, monkeypatch):
    import unbacked.sources

    def failing(paths, report):
        yield events([launch("a", r"C:\a\a.exe"), launch("b", r"C:\a\b.exe", host="h2")])
        raise OSError("disk gone")

    monkeypatch.setattr(unbacked.sources, "iter_event_tables", failing)
    with pytest.raises(OSError):
        export_lake(["x"], tmp_path / "lake", RunReport())
    assert _lake_rows(tmp_path / "lake") == [("a", 0), ("b", 1)]


def test_a_hosts_rows_go_to_full_row_groups_whatever_the_writes(tmp_path, monkeypatch):
    """Rows that arrive interleaved across hosts (every flush holds a few of each) are staged,
    and each host's file is written in full row groups, in order, at close: not a row group per
    flush (which, with hundreds of hosts, made groups of a few hundred rows that cost several
    times as much to read back). Files rotate at ``_ROWS_PER_FILE``; no stage is left."""
    import pyarrow.parquet as pq

    import unbacked.cli.export as export

    monkeypatch.setattr(export, "_BUFFER_ROWS", 4)
    monkeypatch.setattr(export, "_ROW_GROUP_ROWS", 5)
    monkeypatch.setattr(export, "_ROWS_PER_FILE", 12)
    rows = [launch(f"p{i}", r"C:\a\a.exe", host=f"h{i % 3}") for i in range(60)]
    lake = tmp_path / "lake"
    with LakeWriter(lake) as writer:
        for i in range(0, len(rows), 3):  # one row of each host per write
            writer.write(events(rows[i : i + 3]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lake"]  # the stage is gone
    assert _lake_rows(lake) == sorted((f"p{i}", i) for i in range(60))
    for host in ("h0", "h1", "h2"):
        files = sorted((lake / f"host={host}").glob("*.parquet"))
        assert [f.name for f in files] == ["events-00000.parquet", "events-00001.parquet"]
        groups = [
            pq.ParquetFile(f).metadata.row_group(g).num_rows
            for f in files
            for g in range(pq.ParquetFile(f).metadata.num_row_groups)
        ]
        assert groups == [5, 5, 5, 5], groups  # 15 rows reach 12: the rest goes to the next file
        seq = [pq.read_table(f)["lake_seq"].to_pylist() for f in files]
        flat = [s for part in seq for s in part]
        assert flat == sorted(flat) and len(flat) == 20


def test_the_stage_goes_to_tmpdir_when_the_lakes_parent_takes_no_directory(tmp_path, monkeypatch):
    """An empty lake directory given inside a directory where nothing new can be made: the
    stage goes to TMPDIR instead, and is removed there too."""
    import tempfile

    import unbacked.cli.export as export

    parent, spare = tmp_path / "readonly", tmp_path / "tmpdir"
    (parent / "lake").mkdir(parents=True)
    spare.mkdir()
    real = tempfile.mkdtemp

    def mkdtemp(prefix=None, dir=None):
        if dir is not None and str(dir) == str(parent):
            raise PermissionError(13, "Permission denied", str(parent))
        return real(prefix=prefix, dir=spare if dir is None else dir)

    monkeypatch.setattr(export.tempfile, "mkdtemp", mkdtemp)
    rows = [launch(f"p{i}", r"C:\a\a.exe", host=f"h{i % 2}") for i in range(4)]
    with LakeWriter(parent / "lake") as writer:
        writer.write(events(rows))
        assert len(list(spare.iterdir())) == 1  # the stage
    assert list(spare.iterdir()) == []
    assert _lake_rows(parent / "lake") == [(f"p{i}", i) for i in range(4)]


def test_a_host_that_cannot_be_written_stops_the_export_and_leaves_no_stage(tmp_path, monkeypatch):
    """The first error while writing the hosts' files comes out; the hosts not started yet are
    dropped (not written after the error, nor waited for), and the stage is removed."""
    import unbacked.cli.export as export

    written: list[str | None] = []
    real = export.LakeWriter._write_host

    def write_host(self, host, stage):
        if host == "h0":
            raise OSError(28, "No space left on device")
        written.append(host)
        return real(self, host, stage)

    monkeypatch.setattr(export, "_WRITE_THREADS", 1)
    monkeypatch.setattr(export.LakeWriter, "_write_host", write_host)
    rows = [launch(f"p{i}", r"C:\a\a.exe", host=f"h{i}") for i in range(5)]
    with pytest.raises(OSError, match="No space"), LakeWriter(tmp_path / "lake") as writer:
        writer.write(events(rows))
    # h0 came first; of h1..h4 the one thread may have taken one before the rest was dropped
    assert len(written) <= 1, written
    assert sorted(p.name for p in tmp_path.iterdir()) == ["lake"]


def test_an_interrupt_while_reading_writes_nothing_and_removes_what_the_export_made(tmp_path):
    rows = [launch(f"p{i}", r"C:\a\a.exe", host=f"h{i % 3}") for i in range(7)]
    with pytest.raises(KeyboardInterrupt), LakeWriter(tmp_path / "lake") as writer:
        writer.write(events(rows))
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []  # no lake directory, no stage
    given = tmp_path / "given"
    given.mkdir()  # a directory the user made stays, empty
    with pytest.raises(KeyboardInterrupt), LakeWriter(given) as writer:
        writer.write(events(rows))
        raise KeyboardInterrupt
    assert [p.name for p in tmp_path.iterdir()] == ["given"] and list(given.iterdir()) == []


def test_an_interrupt_while_the_hosts_are_written_removes_those_written(tmp_path, monkeypatch):
    import unbacked.cli.export as export

    real = export.LakeWriter._write_host

    def write_host(self, host, stage):
        if host == "h2":
            raise KeyboardInterrupt
        return real(self, host, stage)

    monkeypatch.setattr(export, "_WRITE_THREADS", 1)
    monkeypatch.setattr(export.LakeWriter, "_write_host", write_host)
    rows = [launch(f"p{i}", r"C:\a\a.exe", host=f"h{i}") for i in range(5)]
    with pytest.raises(KeyboardInterrupt), LakeWriter(tmp_path / "lake") as writer:
        writer.write(events(rows))
    assert list(tmp_path.iterdir()) == []  # h0 and h1 were written, then removed


def test_an_interrupted_export_command_exits_130_and_leaves_no_lake(tmp_path, monkeypatch):
    import unbacked.sources
    from unbacked.cli.main import main

    def interrupted(paths, report):
        yield events([launch("a", r"C:\a\a.exe"), launch("b", r"C:\a\b.exe", host="h2")])
        raise KeyboardInterrupt

    monkeypatch.setattr(unbacked.sources, "iter_event_tables", interrupted)
    src = tmp_path / "in.jsonl"
    src.write_text("{}")
    assert main(["export", str(src), "--parquet", str(tmp_path / "lake"), "-q"]) == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]
