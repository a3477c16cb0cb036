"""Program identity by file identity: a binary that takes a known program's name from another
path or with other contents is a different program for the baseline and every JIT allowance."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from tests.sensor.conftest import RecordFn
from unbacked.detect import ProgramBaseline
from unbacked.detect.base import DetectionContext
from unbacked.engine.local import detect_events
from unbacked.model.identity import foreign_mask
from unbacked.model.schema import conform
from unbacked.sensor.fileid import FileIdentities, elf_build_id, kernel_dev_to_st_dev


def _readelf_build_id(path: str) -> str | None:
    out = subprocess.run(["readelf", "-n", path], capture_output=True, text=True).stdout
    for line in out.splitlines():
        if "Build ID:" in line:
            return line.split("Build ID:", 1)[1].strip()
    return None


@pytest.mark.skipif(shutil.which("readelf") is None, reason="needs readelf (binutils)")
def test_build_id_matches_readelf() -> None:
    exe = str(Path(sys.executable).resolve())
    for path in ("/bin/true", exe):
        want = _readelf_build_id(path)
        if want is None:
            continue
        assert elf_build_id(Path(path).read_bytes()[: 64 << 10]) == want


def test_no_build_id_gets_a_content_hash(tmp_path: Path) -> None:
    f = tmp_path / "script"
    f.write_bytes(b"#!/bin/sh\necho hi\n")
    st = f.stat()
    ident = FileIdentities().get(str(f), st.st_dev, st.st_ino, None)
    assert ident.build_id is None and ident.sha256 and len(ident.sha256) == 64
    # a path that now holds another file is never credited to the old one
    assert FileIdentities().get(str(f), st.st_dev, st.st_ino + 1, None).sha256 is None
    assert elf_build_id(b"\x7fELF" + b"\0" * 10) is None  # truncated: no crash


def test_kernel_dev_encoding() -> None:
    assert kernel_dev_to_st_dev((254 << 20) | 1) == __import__("os").makedev(254, 1)


def _events(rows: list[dict]) -> pa.Table:
    base = {"kind": "process", "activity": "exec", "os": "linux", "src_format": "t"}
    return conform(
        {k: [dict(base, **r).get(k) for r in rows] for k in {*base, *rows[0]}}
        | {"time": pa.array([0] * len(rows), pa.timestamp("ns", tz="UTC"))}
    )


def test_foreign_by_path_and_by_contents() -> None:
    learned = _events([
        {"process_uid": "a", "image": "/usr/bin/node", "image_build_id": "aa"},
        {"process_uid": "b", "image": "/usr/bin/node", "image_build_id": "aa"},
        {"process_uid": "b2", "image": "/home/u/bin/tool", "image_build_id": "t1"},
    ])  # fmt: skip
    ctx = DetectionContext.build(learned)
    bl = ProgramBaseline().learn(ctx.facts, calibrate=False)
    fresh = _events([
        {"process_uid": "c", "image": "/usr/bin/node", "image_build_id": "aa"},  # the same
        {"process_uid": "d", "image": "/home/u/x/node", "image_build_id": "aa"},  # another path
        {"process_uid": "e", "image": "/usr/bin/node", "image_build_id": "bb"},  # upgraded
        {"process_uid": "e2", "image": "/opt/node-22/bin/node", "image_build_id": "cc"},
        {"process_uid": "e3", "image": "/home/u/bin/tool", "image_build_id": "t2"},  # rewritten
        {"process_uid": "f", "image": "/usr/bin/luajit"},  # unknown to the baseline: trusted
    ])  # fmt: skip
    prog = pa.array(["node", "node", "node", "node", "tool", "luajit"])
    # a new build-id or path in a root-only system location is an upgrade or another
    # installed version, not a masquerade; in a user's place it is a program of its own
    assert foreign_mask(fresh, prog, bl).to_pylist() == [False, True, False, False, True, False]
    # without a baseline: only a JIT engine's name in a temporary directory
    tmp = _events([{"process_uid": "g", "image": "/tmp/q/node"}])
    assert foreign_mask(tmp, pa.array(["node"]), None).to_pylist() == [True]
    ctx2 = DetectionContext.build(fresh, bl)
    assert ctx2.events["program"].to_pylist() == [
        "node",
        "node [/home/u/x/node]",
        "node",
        "node",
        "tool [/home/u/bin/tool]",
        "luajit",
    ]


@pytest.mark.live
def test_live_loader_renamed_node_is_caught(
    record_control: RecordFn, controls: dict[str, Path], tmp_path: Path
) -> None:
    """The reflective loader (RWX mode) copied as `node` into a temporary directory: its own
    code is not V8, so no JIT allowance; the alert says why."""
    fake = tmp_path / "bin" / "node"
    fake.parent.mkdir()
    shutil.copy2(controls["loader"], fake)
    from unbacked.sensor.live import SensorOptions
    from unbacked.sensor.record import record_command

    out = tmp_path / "node.parquet"
    result = record_command(
        [str(fake), "rwx"], out, options=SensorOptions(follow_tree=True),
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, timeout=60,
    )  # fmt: skip
    assert result.exit_code == 0
    import pyarrow.parquet as pq

    table = pq.read_table(out)
    assert set(pc_unique(table["image_build_id"])) - {None}, "no build-id recorded"
    alerts = detect_events(table).alerts
    assert alerts, "a loader named node raised nothing"
    a = alerts[0]
    assert a.process.name == "node"
    assert {"UNB-L-005", "UNB-M-003"} <= set(a.detectors), a.detectors
    said = " ".join(e.value or "" for e in a.explanation) + " ".join(t.summary for t in a.timeline)
    assert str(fake) in said, said


def pc_unique(col: pa.ChunkedArray) -> list[str | None]:
    return col.cast(pa.string()).unique().to_pylist()
