"""Every registered source goes through the same checks (one conformance test per plug-in).

* its ``examples`` are claimed by it (highest priority) and rejected by every other sniffer;
* it rejects empty input, junk and the heads of every other format;
* reading its examples yields tables of exactly ``EVENT_SCHEMA`` and the counts add up;
* hostile input (empty, junk, truncated examples) never raises anything but ``FormatError``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from unbacked.errors import FormatError
from unbacked.model import EVENT_SCHEMA
from unbacked.runreport import RunReport
from unbacked.sources import SNIFF_BYTES, SOURCES, InputFile, Source, choose_source

from .util import accounted

NAMES = sorted(SOURCES)

JUNK: dict[str, bytes] = {
    "empty": b"",
    "yaml": b"title: Empire PSInject\nid: SDWIN-1\nauthor: x\n",
    "license": b"MIT License\n\nCopyright (c) 2020\n",
    "binary": bytes(range(256)) * 8,
    "zip": b"PK\x03\x04" + b"\x00" * 60,
    "elf": b"\x7fELF\x02\x01\x01" + b"\x00" * 60,
    "json-array": b'[{"EventID": 1}]\n',
    "csv": b"time,pid,image\n1,2,a.exe\n",
}


def _other_examples(name: str) -> list[tuple[str, bytes]]:
    return [(n, ex) for n, cls in SOURCES.items() if n != name for ex in cls.examples]


def _read(cls: type[Source], data: bytes) -> tuple[int, RunReport]:
    report = RunReport()
    rows = 0
    for table in cls().read(InputFile.from_bytes("sample", data), report):
        assert table.schema.equals(EVENT_SCHEMA, check_metadata=True), cls.name
        assert table.num_rows > 0  # sources do not yield empty tables
        rows += table.num_rows
    return rows, report


@pytest.mark.parametrize("name", NAMES)
def test_contract_attributes(name: str) -> None:
    cls = SOURCES[name]
    assert cls.name == name and isinstance(cls.description, str) and cls.description
    assert isinstance(cls.priority, int)
    assert all(isinstance(ex, bytes) and ex for ex in cls.examples)


@pytest.mark.parametrize("name", NAMES)
def test_rejects_junk_and_other_formats(name: str) -> None:
    cls = SOURCES[name]
    for label, data in JUNK.items():
        assert not cls.sniff(data[:SNIFF_BYTES], f"x.{label}"), (name, label)
        assert not cls.accepts(InputFile.from_bytes(f"x.{label}", data), data[:SNIFF_BYTES])
    for owner, ex in _other_examples(name):
        assert not cls.sniff(ex[:SNIFF_BYTES], "input"), (name, "claims an example of", owner)


@pytest.mark.parametrize("name", NAMES)
def test_claims_and_reads_its_examples(name: str) -> None:
    cls = SOURCES[name]
    if not cls.examples:
        pytest.skip(f"{name} ships no examples")
    for ex in cls.examples:
        inp = InputFile.from_bytes("sample", ex)
        assert choose_source(inp, ex[:SNIFF_BYTES]) is cls
        rows, report = _read(cls, ex)
        rep = report.files["sample"]
        assert rows == rep.events > 0 and accounted(rep), (name, rep.to_dict())


@pytest.mark.parametrize("name", NAMES)
def test_hostile_input_is_counted_or_a_format_error(name: str) -> None:
    cls = SOURCES[name]
    inputs = list(JUNK.values())
    for ex in cls.examples:
        inputs += [ex[: len(ex) // 2], ex[: len(ex) - 3], ex + ex[:7], ex.replace(b"1", b"\xff")]
    for data in inputs:
        try:
            _rows, report = _read(cls, data)
        except FormatError:
            continue
        rep = report.files.get("sample")
        if rep is not None:
            assert accounted(rep), (name, data[:40], rep.to_dict())


@pytest.mark.shared_data
def test_sysmon_evtx_conformance_on_a_real_file(shared_data: Path) -> None:
    cls = SOURCES["sysmon-evtx"]
    path = shared_data / "windows/omerbenamram_evtx/samples/sysmon.evtx"
    data = path.read_bytes()
    assert choose_source(InputFile.from_bytes(path.name, data), data[:SNIFF_BYTES]) is cls
    for other in NAMES:
        if other != "sysmon-evtx":
            assert not SOURCES[other].sniff(data[:SNIFF_BYTES], path.name), other
    rows, report = _read(cls, data)
    assert rows > 0 and accounted(report.files["sample"])
    assert os.fspath(path)  # read from bytes (file object), not only from a path
