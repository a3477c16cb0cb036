"""Every registered source goes through the same checks (``unbacked.testing``, the kit a
third-party source runs on itself too):

* its ``examples`` are claimed by it (highest priority) and rejected by every other sniffer;
* it rejects empty input, junk and the heads of every other format;
* reading its examples yields tables of exactly ``EVENT_SCHEMA`` and the counts add up;
* hostile input (empty, junk, truncated examples) never raises anything but ``FormatError``.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from unbacked.model import EVENT_SCHEMA
from unbacked.runreport import RunReport
from unbacked.sources import SNIFF_BYTES, SOURCES, InputFile, Source, choose_source
from unbacked.testing import Check, yield_registry_checks

from .util import accounted

NAMES = sorted(SOURCES)


@pytest.mark.parametrize("check", list(yield_registry_checks("sources")), ids=str)
def test_source_conformance(check: Check) -> None:
    check()


@pytest.mark.parametrize("name", NAMES)
def test_examples_choose_their_source(name: str) -> None:
    """Discovery (not only the sniffers) hands each example to its own source."""
    cls = SOURCES[name]
    for ex in cls.examples:
        assert choose_source(InputFile.from_bytes("sample", ex), ex[:SNIFF_BYTES]) is cls


def _read(cls: type[Source], data: bytes) -> tuple[int, RunReport]:
    report = RunReport()
    rows = 0
    for table in cls().read(InputFile.from_bytes("sample", data), report):
        assert table.schema.equals(EVENT_SCHEMA, check_metadata=True), cls.name
        assert table.num_rows > 0  # sources do not yield empty tables
        rows += table.num_rows
    return rows, report


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
