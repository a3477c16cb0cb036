"""Event schema and the state tracker."""

from __future__ import annotations

import pyarrow as pa
import pytest

from tests.support.events import events, launch, memory, module_load, remote_thread
from unbacked.model.schema import EVENT_SCHEMA, conform, empty_events
from unbacked.model.state import StateTracker, program_column, program_of
from unbacked.model.winconst import is_executable, protection_name, short_protection


def test_schema_is_versioned_and_conform_fills_and_casts():
    assert EVENT_SCHEMA.metadata[b"unbacked.schema.version"] == b"2"
    t = conform(
        {
            "time": pa.array([0], pa.timestamp("ns", tz="UTC")),
            "kind": ["memory"],
            "activity": ["allocate"],
            "src_format": ["x"],
            "protection": [0x40],
            "not_a_column": [1],
        }
    )
    assert t.schema == EVENT_SCHEMA and t.num_rows == 1
    assert t["protection"].type == pa.uint32() and t["pid"].null_count == 1
    assert empty_events().num_rows == 0
    with pytest.raises(ValueError):
        conform({"kind": ["a", "b"], "activity": ["x"]})


def test_program_names():
    assert program_of(r"C:\Windows\System32\NOTEPAD.EXE") == "notepad.exe"
    assert program_of("/usr/bin/python3.11") == "python3.11"
    assert program_of(None) is None and program_of("") is None
    col = program_column(pa.array([r"C:\A\B.exe", None, "/x/y", ""]))
    assert col.to_pylist() == ["b.exe", None, "y", None]


def test_tracker_processes_parent_chain_and_regions():
    rows = [
        launch("gp", r"C:\Windows\explorer.exe", pid=1),
        launch(
            "p",
            r"C:\x\doc.exe",
            parent="gp",
            parent_image=r"C:\Windows\explorer.exe",
            pid=2,
            cmd="doc.exe report.pdf",
        ),
        module_load("p", r"C:\x\doc.exe", r"C:\Windows\System32\clr.dll"),
        memory("p", r"C:\x\doc.exe", "allocate", 0x10000, 0x3000, 0x04),
        memory("p", r"C:\x\doc.exe", "protect", 0x10000, 0x3000, 0x20, old=0x04, header_kind="pe"),
        remote_thread("inj", r"C:\x\inj.exe", "p", r"C:\x\doc.exe", 0x10100),
    ]
    tracker = StateTracker()
    tracker.update(events(rows[:2]))
    tracker.update(events(rows[2:]))
    p = tracker.process("p")
    assert p is not None and p.pid == 2 and p.cmd_line == "doc.exe report.pdf"
    assert [x.uid for x in tracker.parent_chain("p")] == ["gp"]
    assert [c.uid for c in tracker.children("gp")] == ["p"]
    assert tracker.modules("p").num_rows == 1
    (region,) = tracker.regions("p")
    assert region.base == 0x10000 and region.size == 0x3000 and region.header_kind == "pe"
    assert [prot for _, prot in region.protections] == ["PAGE_READWRITE", "PAGE_EXECUTE_READ"]
    assert region.executable and region.unbacked and len(region.threads) == 1


def test_tracker_bounded_keeps_identities():
    tracker = StateTracker(max_events=2)
    tracker.update(events([launch("a", r"C:\a.exe", pid=7)]))
    tracker.update(events([launch("b", r"C:\b.exe", pid=8)]))
    tracker.update(events([launch("c", r"C:\c.exe", pid=9)]))
    assert tracker.events.num_rows <= 2
    assert tracker.process("a") is not None and tracker.process("a").pid == 7


def test_parent_cycle_is_bounded():
    rows = [
        launch("a", r"C:\a.exe", parent="b", parent_image=r"C:\b.exe"),
        launch("b", r"C:\b.exe", parent="a", parent_image=r"C:\a.exe"),
    ]
    chain = StateTracker.from_events(events(rows)).parent_chain("a")
    assert [p.uid for p in chain] == ["b"]


def test_protection_names():
    assert short_protection(0x40) == "RWX" and short_protection(0x5, "linux") == "R-X"
    assert protection_name(0x140) == "PAGE_EXECUTE_READWRITE|GUARD"
    assert protection_name(7, "linux") == "PROT_READ|PROT_WRITE|PROT_EXEC"
    assert is_executable(0x20) and not is_executable(0x04) and is_executable(4, "linux")


def test_program_column_is_program_of_on_every_row_small_and_large():
    values = [r"C:\Windows\System32\NOTEPAD.EXE", None, "/usr/bin/python3.11", "", "a\\b/",
              r"\\?\C:\x\y.dll"]  # fmt: skip
    for n in (1, 100):  # below and above the per-distinct-value path
        column = pa.chunked_array([pa.array(values * n), pa.array(["D.EXE"] * 300)])
        assert program_column(column).to_pylist() == [program_of(v) for v in column.to_pylist()]
    dictionary = pa.array(values * 100).dictionary_encode()
    assert program_column(dictionary).to_pylist() == [program_of(v) for v in values * 100]


def test_program_column_any_number_of_distinct_images() -> None:
    """More than 256 distinct images (every real fleet) must not recurse: #12."""
    images = pa.array([f"C:\\Apps\\Tool{i}\\Tool{i}.EXE" for i in range(10_000)] + [None, ""])
    programs = program_column(images).to_pylist()
    assert programs[:2] == ["tool0.exe", "tool1.exe"]
    assert programs[9_999] == "tool9999.exe"
    assert programs[-2:] == [None, None]
    repeated = program_column(pa.chunked_array([images, images])).to_pylist()
    assert repeated == programs + programs
