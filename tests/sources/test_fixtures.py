"""The winlab fixtures: real Windows programs (tools/winlab) recorded as ETW-TI-shaped events.

Checks that the checked-in runs parse cleanly into the story each run tells (benign: JIT-style
RW -> R-X arenas of the usual sizes from dochost.exe itself; triggered: allocate -> write ->
protect -> thread into the region -> connect), and that the recorder, when its toolchain is
here, regenerates them byte for byte.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from unbacked.sources import choose_source
from unbacked.sources.base import InputFile
from unbacked.sources.etwti import EtwTiSource

from .windows_util import accounted, read

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "windows"
RECORDER = ROOT / "tools" / "winlab" / "record.py"
BENIGN = [f"benign-{i}" for i in range(1, 6)]
TRIGGERED = ["reflective", "shellcode", "rwx"]
PAGE_EXECUTE_READ, PAGE_READWRITE, PAGE_EXECUTE_READWRITE = 0x20, 0x04, 0x40


def fixture(name: str) -> Path:
    return FIXTURES / ("baseline" if name in BENIGN else "triggered") / f"{name}.jsonl"


def load(name: str) -> list[dict[str, Any]]:
    data = fixture(name).read_bytes()
    rows, rep = read(EtwTiSource, data, name=name)
    assert rep.skipped == {} and rep.ignored == 0 and accounted(rep), rep
    return rows


def image_range(rows: list[dict[str, Any]]) -> tuple[int, int]:
    (mod,) = [r for r in rows if r["kind"] == "module" and r["module_path"].endswith("dochost.exe")]
    return mod["module_base"], mod["module_base"] + mod["module_size"]


@pytest.mark.parametrize("name", BENIGN + TRIGGERED)
def test_fixture_is_found_and_read_as_etwti(name: str) -> None:
    path = fixture(name)
    head = path.read_bytes()[:65536]
    assert choose_source(InputFile.from_bytes(path.name, head), head) is EtwTiSource
    rows = load(name)
    (launch,) = [r for r in rows if r["activity"] == "launch"]
    assert launch["image"].endswith("\\dochost.exe") and launch["parent_pid"] == 4120
    assert {r["process_uid"] for r in rows} == {launch["process_uid"]}
    assert [r["time"] for r in rows] == sorted(r["time"] for r in rows)


@pytest.mark.parametrize("name", BENIGN)
def test_benign_runs_look_like_the_baseline(name: str) -> None:
    rows = load(name)
    lo, hi = image_range(rows)
    allocs = [r for r in rows if r["activity"] == "allocate"]
    protects = [r for r in rows if r["activity"] == "protect"]
    assert len(allocs) == len(protects) >= 3
    assert {r["region_size"] for r in allocs} <= {0x10000, 0x20000, 0x40000}
    assert all(r["base_address"] % 0x1000 == 0 for r in allocs)  # page aligned
    assert all(r["caller_module"] == "dochost.exe" and not r["caller_unbacked"] for r in allocs)
    assert all(
        (r["old_protection"], r["protection"]) == (PAGE_READWRITE, PAGE_EXECUTE_READ)
        for r in protects
    )
    threads = [r for r in rows if r["kind"] == "thread"]
    assert len({r["tid"] for r in allocs}) == 3  # from a few worker threads
    assert all(lo <= r["start_address"] < hi for r in threads)  # threads start in the image
    assert not [r for r in rows if r["activity"] in ("write", "connect")]


def story(rows: list[dict[str, Any]]) -> tuple[list[str], dict[str, Any], dict[str, Any]]:
    """The activities that touched the region a thread was started in, in order, with that
    region's allocation and the thread event."""
    lo, hi = image_range(rows)
    (thread,) = [r for r in rows if r["kind"] == "thread" and not lo <= r["start_address"] < hi]
    alloc = next(
        r
        for r in rows
        if r["activity"] == "allocate"
        and r["base_address"] <= thread["start_address"] < r["base_address"] + r["region_size"]
    )
    base, end = alloc["base_address"], alloc["base_address"] + alloc["region_size"]
    seq: list[str] = []
    for r in rows:
        in_region = r["kind"] == "memory" and base <= r["base_address"] < end
        relevant = in_region or r is thread or r["activity"] == "connect"
        if relevant and (not seq or seq[-1] != r["activity"]):
            seq.append(r["activity"])
    return seq, alloc, thread


def test_reflective_run_tells_the_loader_story() -> None:
    rows = load("reflective")
    seq, alloc, thread = story(rows)
    assert seq == ["allocate", "write", "protect", "thread_create", "connect"]
    assert alloc["region_size"] == 0x6000  # SizeOfImage of the payload: not a usual arena size
    assert alloc["protection"] == PAGE_READWRITE
    writes = [r for r in rows if r["activity"] == "write"]
    assert writes[0]["base_address"] == alloc["base_address"]  # headers first: PE at the base
    assert all(w["alloc_base"] == alloc["base_address"] for w in writes)
    (flip,) = [
        r for r in rows if r["activity"] == "protect" and r["alloc_base"] == alloc["base_address"]
    ]
    assert (flip["old_protection"], flip["protection"]) == (PAGE_READWRITE, PAGE_EXECUTE_READ)
    assert flip["alloc_protection"] == PAGE_READWRITE and flip["region_type"] == "private"
    (conn,) = [r for r in rows if r["activity"] == "connect"]
    assert (conn["remote_ip"], conn["remote_port"]) == ("127.0.0.1", 4444)
    assert conn["tid"] == thread["target_tid"]  # the thread started in the region connects
    # the payload's own stage buffer: allocated and flipped by code no file backs
    stage = [r for r in rows if r["kind"] == "memory" and r.get("caller_unbacked")]
    assert [r["activity"] for r in stage] == ["allocate", "protect"]
    assert {r["tid"] for r in stage} == {thread["target_tid"]}
    assert all("caller_module" not in r for r in stage)
    loads = [r["module_path"].rsplit("\\", 1)[-1] for r in rows if r["activity"] == "load"]
    assert "ws2_32.dll" in loads  # resolved by the loader's LoadLibraryA, not at start


def test_shellcode_run() -> None:
    rows = load("shellcode")
    seq, alloc, thread = story(rows)
    assert seq == ["allocate", "write", "protect", "thread_create", "connect"]
    assert (alloc["region_size"], thread["start_address"]) == (0x1000, alloc["base_address"])


def test_rwx_run_has_no_protection_change() -> None:
    rows = load("rwx")
    seq, alloc, _ = story(rows)
    assert seq == ["allocate", "write", "thread_create", "connect"]
    assert alloc["protection"] == alloc["alloc_protection"] == PAGE_EXECUTE_READWRITE


def _winlab_python() -> str | None:
    """An interpreter with speakeasy: $WINLAB_PYTHON, the script's default venv, or this one."""
    candidates = [os.environ.get("WINLAB_PYTHON")]
    venv = os.environ.get("WINLAB_VENV") or str(
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "unbacked" / "winlab-venv"
    )
    candidates.append(str(Path(venv) / "bin" / "python"))
    for c in candidates:
        if c and Path(c).exists():
            ok = subprocess.run([c, "-c", "import speakeasy"], capture_output=True, check=False)
            if ok.returncode == 0:
                return c
    if importlib.util.find_spec("speakeasy") is not None:
        return sys.executable
    return None


@pytest.mark.slow
def test_recorder_regenerates_the_fixtures(tmp_path: Path) -> None:
    if shutil.which("x86_64-w64-mingw32-gcc") is None:
        pytest.skip("mingw-w64 not installed (apt-get install gcc-mingw-w64-x86-64)")
    python = _winlab_python()
    if python is None:
        pytest.skip(
            "speakeasy-emulator not installed (scripts/make-windows-fixtures.sh sets it up)"
        )
    out = tmp_path / "out"
    subprocess.run(
        [python, str(RECORDER), "--out", str(out), "--build", str(tmp_path / "build")],
        check=True,
        capture_output=True,
        timeout=600,
    )
    made = sorted(p.relative_to(out) for p in out.rglob("*.jsonl"))
    assert made == sorted(p.relative_to(FIXTURES) for p in FIXTURES.rglob("*.jsonl"))
    for rel in made:
        assert (out / rel).read_bytes() == (FIXTURES / rel).read_bytes(), rel
