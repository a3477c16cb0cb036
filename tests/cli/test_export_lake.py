"""The lake writer keeps every row it was given, also when the export stops on an error."""

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
