"""Discovery: walking, zip members in place, unrecognised files, size caps, the registry."""

from __future__ import annotations

import importlib
import os
import pkgutil
import sys
import zipfile
from collections import Counter
from pathlib import Path

import pytest

import unbacked.sources as sources
from unbacked.errors import UnknownFormatError
from unbacked.runreport import RunReport
from unbacked.sources import iter_event_tables, iter_inputs, read_events
from unbacked.sources.discovery import NOT_TELEMETRY_KEY

from .test_sysmon_json import ACCESS, export
from .util import jsonl


def _tree(root: Path) -> None:
    (root / "b").mkdir(parents=True)
    (root / "a").mkdir()
    (root / "b" / "two.json").write_bytes(jsonl(export(10, **ACCESS)))
    (root / "a" / "one.json").write_bytes(jsonl(export(10, **ACCESS), export(10, **ACCESS)))
    (root / "LICENSE").write_text("MIT License\n")
    (root / "a" / "meta.yaml").write_text("title: x\n")
    (root / "a" / "empty.json").write_bytes(b"")
    with zipfile.ZipFile(root / "b" / "set.zip", "w") as zf:
        zf.writestr("z/inner.json", jsonl(export(10, **ACCESS)))
        zf.writestr("z/README.md", "# readme\n")
        zf.writestr("__MACOSX/z/._inner.json", b"\x00\x05\x16\x07")


def test_walk_is_sorted_recursive_and_opens_zips_in_place(tmp_path: Path) -> None:
    _tree(tmp_path)
    report = RunReport()
    names = [inp.name for inp, _ in iter_inputs([tmp_path], report)]
    assert names == [
        str(tmp_path / "a" / "one.json"),
        str(tmp_path / "b" / "set.zip") + "!z/inner.json",
        str(tmp_path / "b" / "two.json"),
    ]
    not_tel = report.extra[NOT_TELEMETRY_KEY]
    assert str(tmp_path / "LICENSE") in not_tel and str(tmp_path / "a" / "meta.yaml") in not_tel
    assert str(tmp_path / "b" / "set.zip") + "!z/README.md" in not_tel
    assert not any("__MACOSX" in n for n in not_tel)
    assert report.failed_files == []  # unrecognised files in a directory are not errors
    # twice the same answer (deterministic)
    again = [inp.name for inp, _ in iter_inputs([tmp_path], RunReport())]
    assert again == names


def test_read_events_concatenates_everything(tmp_path: Path) -> None:
    _tree(tmp_path)
    report = RunReport()
    t = read_events([tmp_path], report)
    assert t.num_rows == 4 and report.events == 4
    # small JSON-lines inputs (files and members alike) are mapped together, in one query
    assert sum(1 for _ in iter_event_tables([tmp_path], RunReport())) == 1


def test_explicit_unknown_file_is_a_file_error(tmp_path: Path) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("hello\n")
    report = RunReport()
    assert read_events([f], report).num_rows == 0
    assert report.files[str(f)].error.startswith("UnknownFormatError")
    with pytest.raises(UnknownFormatError):
        read_events([f], RunReport(strict=True))
    missing = RunReport()
    read_events([tmp_path / "nope.evtx"], missing)
    assert missing.failed_files and "no such file" in missing.failed_files[0].error


def test_explicit_empty_file_is_reported(tmp_path: Path) -> None:
    f = tmp_path / "empty.json"
    f.write_bytes(b"")
    report = RunReport()
    read_events([f], report)
    assert "empty file" in (report.files[str(f)].error or "")


def test_zip_member_size_is_capped(tmp_path: Path) -> None:
    z = tmp_path / "bomb.zip"
    line = jsonl(export(10, **ACCESS))
    with zipfile.ZipFile(z, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("bomb.json", line * 20000)  # ~20 MB, compresses to little
    report = RunReport()
    got = sum(t.num_rows for t in _tables(z, report, cap=1 << 20))
    rep = report.files[f"{z}!bomb.json"]
    assert rep.skipped.get("input exceeds size cap") == 1
    assert 0 < got < 20000  # what fit under the cap was read


def _tables(z: Path, report: RunReport, cap: int):  # type: ignore[no-untyped-def]
    for inp, cls in iter_inputs([z], report, max_member_bytes=cap):
        yield from cls().read(inp, report)


def test_corrupt_zip_is_a_file_error(tmp_path: Path) -> None:
    z = tmp_path / "bad.zip"
    z.write_bytes(b"PK\x03\x04" + b"\x00" * 100)
    report = RunReport()
    read_events([z], report)
    assert report.failed_files


def test_every_module_of_the_package_is_imported_and_registers() -> None:
    for mod in pkgutil.iter_modules(sources.__path__):
        assert f"unbacked.sources.{mod.name}" in sys.modules, mod.name
    importlib.reload(sources)  # re-import must not raise "duplicate source name"
    mine = {
        "sysmon-evtx",
        "sysmon-jsonl",
        "sysmon-winlogbeat",
        "ocsf-jsonl",
        "unbacked-jsonl",
        "unbacked-parquet",
    }
    assert mine <= set(sources.SOURCES)


def test_public_api_is_pinned() -> None:
    assert set(sources.__all__) == {
        "MAX_MEMBER_BYTES",
        "SNIFF_BYTES",
        "SOURCES",
        "EventWriter",
        "InputFile",
        "Source",
        "choose_source",
        "iter_event_tables",
        "iter_inputs",
        "read_events",
        "register",
        "write_events",
    }
    for name in sources.__all__:
        assert getattr(sources, name) is not None


def test_pipes_and_devices_are_not_read(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)  # opening it for reading would block forever
    (tmp_path / "one.json").write_bytes(jsonl(export(10, **ACCESS)))
    report = RunReport()
    assert read_events([tmp_path], report).num_rows == 1
    assert str(fifo) in report.extra[NOT_TELEMETRY_KEY]
    explicit = RunReport()
    read_events([fifo, "/dev/zero"], explicit)
    assert {f.path for f in explicit.failed_files} == {str(fifo), "/dev/zero"}


def _mixed(root: Path, n: int) -> None:
    """Plain Sysmon files and zips holding an OCSF and a Sysmon member, alternating."""
    ocsf = sources.SOURCES["ocsf-jsonl"].examples[0]
    sysmon = jsonl(export(10, **ACCESS))
    for i in range(n):
        (root / f"{i:02d}a.json").write_bytes(sysmon)
        with zipfile.ZipFile(root / f"{i:02d}b.zip", "w") as zf:
            zf.writestr("x.json", ocsf)
            zf.writestr("y.json", sysmon)


def _count_group_reads(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    calls: Counter[str] = Counter()
    for name in ("sysmon-jsonl", "ocsf-jsonl"):
        cls = sources.SOURCES[name]

        def counting(self, inputs, report, orig=cls.read_many, name=name):  # type: ignore[no-untyped-def]
            calls[name] += 1
            yield from orig(self, inputs, report)

        monkeypatch.setattr(cls, "read_many", counting)
    return calls


def test_alternating_formats_are_grouped_per_source(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a collection whose formats alternate (archives of mixed members) still pays one query
    # per source, not one per run of consecutive inputs of one format
    _mixed(tmp_path, 6)
    calls = _count_group_reads(monkeypatch)
    report = RunReport()
    table = read_events([tmp_path], report)
    assert calls == {"sysmon-jsonl": 1, "ocsf-jsonl": 1}
    assert report.failed_files == [] and report.unaccounted == []
    assert len(report.files) == 18 and all(f.events > 0 for f in report.files.values())
    assert table.num_rows == report.events


def test_a_group_holding_many_archives_open_is_read_early(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from unbacked.sources import discovery

    _mixed(tmp_path, 6)
    expected = RunReport()
    read_events([tmp_path], expected)
    monkeypatch.setattr(discovery, "MAX_OPEN_ARCHIVES", 2)
    opened: list[zipfile.ZipFile] = []
    real = zipfile.ZipFile

    class Tracked(real):  # type: ignore[misc, valid-type]
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, **kwargs)  # type: ignore[arg-type]
            opened.append(self)

    monkeypatch.setattr(discovery.zipfile, "ZipFile", Tracked)
    most = 0
    calls = _count_group_reads(monkeypatch)
    report = RunReport()
    for _ in iter_event_tables([tmp_path], report):
        most = max(most, sum(1 for zf in opened if zf.fp is not None))
    assert calls["ocsf-jsonl"] > 1 and most <= 3
    assert sum(1 for zf in opened if zf.fp is not None) == 0
    assert {n: (f.records, f.events) for n, f in report.files.items()} == {
        n: (f.records, f.events) for n, f in expected.files.items()
    }


def test_a_source_registered_later_is_asked_in_its_place(monkeypatch, tmp_path: Path) -> None:
    """Discovery keeps the sources sorted by priority between inputs; a source registered
    after that (a plug-in imported late) is asked in its place all the same."""
    from typing import ClassVar

    from unbacked.sources import SOURCES, Source, choose_source
    from unbacked.sources.discovery import _file_input

    path = tmp_path / "one.json"
    path.write_bytes(jsonl(export(10, **ACCESS)))
    inp = _file_input(path)
    head = path.read_bytes()
    assert choose_source(inp, head).name == "sysmon-jsonl"  # the order is kept from here on

    class Everything(Source):
        name: ClassVar[str] = "test-everything"
        description: ClassVar[str] = "claims every input"
        priority: ClassVar[int] = 1000

        @classmethod
        def sniff(cls, head: bytes, name: str) -> bool:
            return True

        def read(self, inp, report):  # pragma: no cover - never read
            return iter(())

    monkeypatch.setattr(SOURCES, "_items", dict(SOURCES._items))
    SOURCES.register(Everything)
    assert choose_source(inp, head) is Everything
    monkeypatch.undo()
    assert choose_source(inp, head).name == "sysmon-jsonl"
