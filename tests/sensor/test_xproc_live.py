"""Cross-process acts an injector can shape to slip past a naive sensor, recorded live
(``xproc_acts.py``): a decoy iovec first, scattered iovecs, a flood before the code write, a
caller inside a pid namespace, its own traced child, POKEUSER on regs.rip, and /proc/self/mem
opened by paths no text prefix check sees."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.sensor.conftest import rows
from tests.support.events import exact_rows
from unbacked.detect.rules.linux import ANON_SELF_WRITE_SCORE
from unbacked.engine.local import detect_events

pytestmark = pytest.mark.live

ACTS = Path(__file__).with_name("xproc_acts.py")


def _record(tmp_path: Path, argv: list[str], stats: dict | None = None, **opts: int) -> pa.Table:
    from unbacked.sensor.live import SensorOptions
    from unbacked.sensor.record import record_command

    out = tmp_path / "run.parquet"
    log = tmp_path / "run.out"
    with open(log, "w") as fh:
        result = record_command(
            argv, out, options=SensorOptions(follow_tree=True, **opts),
            stdin=subprocess.DEVNULL, stdout=fh, stderr=subprocess.STDOUT, timeout=60,
        )  # fmt: skip
    text = log.read_text()
    assert result.exit_code == 0 and "OK " in text, text
    if stats is not None:
        stats.update(result.stats)
    return pq.read_table(out)


def _act(tmp_path: Path, *args: str, stats: dict | None = None, **opts: int) -> pa.Table:
    return _record(tmp_path, [sys.executable, str(ACTS), *args], stats, **opts)


def _xrows(table: pa.Table, code: str) -> list[dict]:
    return [r for r in rows(table, event_code=code) if r["target_uid"] != r["process_uid"]]


def _detectors(table: pa.Table) -> dict[str, list]:
    out: dict[str, list] = {}
    for a in detect_events(table).alerts:
        for d in a.detectors:
            out.setdefault(d, []).append(a)
    return out


def test_decoy_iovec_does_not_hide_the_code(live: None, tmp_path: Path) -> None:
    table = _act(tmp_path, "decoy-vmwrite")
    w = _xrows(table, "linux:process_vm_writev")
    assert [(r["region_size"], r["vm_flags"] & 4) for r in w] == [(8, 0), (64, 4)], w
    assert w[1]["region_type"] == "anonymous"
    hit = _detectors(table).get("UNB-L-004")
    assert hit, "the code iovec behind a decoy must raise UNB-L-004"
    assert any("64 bytes" in str(e) for e in hit[0].explanation), hit[0].explanation


def test_scattered_iovecs_are_not_one_run(live: None, tmp_path: Path) -> None:
    table = _act(tmp_path, "scatter-vmwrite")
    w = _xrows(table, "linux:process_vm_writev")
    assert len(w) == 8 and {r["region_size"] for r in w} == {8}, w
    assert len({r["base_address"] for r in w}) == 8
    assert "UNB-L-004" not in _detectors(table)  # eight 8-byte writes, 64 bytes apart


def test_flood_does_not_suppress_the_code_write(live: None, tmp_path: Path) -> None:
    stats: dict = {}
    table = _act(tmp_path, "flood-vmwrite", "300", stats=stats, rate_burst=50)
    w = _xrows(table, "linux:process_vm_writev")
    assert len(w) < 300, "the flood into data was rate limited"
    assert stats["suppressed"] > 0, stats
    code = [r for r in w if r["vm_flags"] & 4]
    assert [r["region_size"] for r in code] == [64]
    assert "UNB-L-004" in _detectors(table)


def test_caller_in_pid_namespace_leaves_target_unresolved(live: None, tmp_path: Path) -> None:
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare (util-linux) is needed")
    table = _record(tmp_path, [unshare, "--pid", "--fork", sys.executable, str(ACTS), "ns-vmwrite"])
    w = rows(table, event_code="linux:process_vm_writev")
    assert len(w) == 1, w
    # pid 2 in the namespace is the child; pid 2 of the initial namespace is kthreadd
    assert w[0]["target_tid"] == 2 and w[0]["target_uid"] is None, w[0]
    assert w[0]["region_type"] is None and w[0]["vm_flags"] is None


def test_tracee_in_pid_namespace_is_resolved(live: None, tmp_path: Path) -> None:
    """ptrace names its target by a namespace pid too, but a tracee is on the caller's list of
    tracees: the pid is translated through it, so injection inside a container is seen."""
    unshare = shutil.which("unshare")
    if unshare is None:
        pytest.skip("unshare (util-linux) is needed")
    argv = [unshare, "--pid", "--fork", sys.executable, str(ACTS), "traceme-poke"]
    table = _record(tmp_path, argv)
    pokes = rows(table, event_code="linux:ptrace_poketext")
    assert len(pokes) == 8 and all(p["target_tid"] == 2 for p in pokes)
    assert all(p["target_uid"] is not None and p["target_pid"] != 2 for p in pokes), pokes[0]
    assert pokes[0]["region_type"] == "file" and pokes[0]["vm_flags"] & 4
    assert "UNB-L-004" in _detectors(table)


def test_own_child_code_at_its_instruction_pointer(live: None, tmp_path: Path) -> None:
    table = _act(tmp_path, "traceme-poke")
    pokes = _xrows(table, "linux:ptrace_poketext")
    assert len(pokes) == 8
    assert all(p["target_parent_pid"] == p["pid"] for p in pokes)  # its own child
    assert pokes[0]["start_address"] == pokes[0]["base_address"]  # the child resumes there
    hit = _detectors(table).get("UNB-L-004")
    assert hit, "code poked at the own child's instruction pointer must raise UNB-L-004"


def test_pokeuser_rip_is_a_set_context(live: None, tmp_path: Path) -> None:
    table = _act(tmp_path, "pokeuser-rip")
    ctx = rows(table, event_code="linux:ptrace_pokeuser")
    pokes = _xrows(table, "linux:ptrace_poketext")
    assert len(ctx) == 1 and ctx[0]["activity"] == "set_context", ctx
    assert ctx[0]["start_address"] == pokes[0]["base_address"]
    assert "UNB-L-004" in _detectors(table)


def test_proc_mem_opened_by_other_paths(live: None, tmp_path: Path) -> None:
    table = _act(tmp_path, "procmem-bypass")
    opens = rows(table, event_code="linux:open_mem")
    writes = rows(table, event_code="linux:pwrite_mem")
    assert len(opens) == 4, opens
    assert len(writes) == 4 and all(w["target_uid"] == w["process_uid"] for w in writes)
    assert all(w["region_size"] == 64 and w["vm_flags"] & 4 for w in writes)
    assert all(w["region_type"] == "anonymous" for w in writes)
    # code written into anonymous memory of its own (a JIT without double mapping does that):
    # UNB-L-003 at its supporting score, below the alert threshold alone
    sig = exact_rows(detect_events(table).signals)
    own = [s for s in sig if s["detector"] == "UNB-L-003"]
    assert len(own) == 4 and {s["score"] for s in own} == {ANON_SELF_WRITE_SCORE}, own
    assert all("through /proc/self/mem" in s["message"] for s in own)
