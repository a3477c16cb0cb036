"""One recording, every shape: the winlab runs rendered as SilkETW JSON, Windows event XML and
Elastic Defend documents (tools/winlab/shapes.py) read back through their sources must agree
with the flat recording on everything each shape carries."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import orjson
import pytest

from unbacked.sources.elastic import ElasticDefendSource
from unbacked.sources.etwti import EtwTiSource
from unbacked.sources.winxml import WinEventXmlSource

from .windows_util import accounted, read

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "windows"
RUNS = ["baseline/benign-1", "triggered/reflective", "triggered/shellcode", "triggered/rwx"]


def _shapes() -> ModuleType:
    spec = importlib.util.spec_from_file_location("winlab_shapes", ROOT / "tools/winlab/shapes.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("winlab_shapes", mod)
    spec.loader.exec_module(mod)
    return mod


shapes = _shapes()


def recorded(run: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    data = (FIXTURES / f"{run}.jsonl").read_bytes()
    rows, _ = read(EtwTiSource, data)
    return [orjson.loads(line) for line in data.splitlines()], rows


def pick(rows: list[dict[str, Any]], drop: set[str]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in drop} for r in rows]


@pytest.mark.parametrize("run", RUNS)
def test_silketw_rendering_reads_the_same(run: str) -> None:
    events, flat = recorded(run)
    rows, rep = read(EtwTiSource, shapes.render(events, "silketw").encode())
    assert rep.skipped == {} and accounted(rep)
    # SilkETW has no host and no stack; it names the process "dochost", but the launch in the
    # same capture gives every event of the process its full image path
    drop = {"host", "process_uid", "target_uid", "parent_uid", "caller_module",
            "caller_offset", "caller_unbacked", "call_stack_summary", "call_trace"}  # fmt: skip
    assert pick(rows, drop) == pick(flat, drop)
    assert {r["image"] for r in rows if r["kind"] == "memory"} == {
        "\\Device\\HarddiskVolume3\\Users\\analyst\\AppData\\Local\\DocHost\\dochost.exe"
    }


@pytest.mark.parametrize("run", RUNS)
def test_xml_rendering_reads_the_same(run: str) -> None:
    events, flat = recorded(run)
    rows, rep = read(WinEventXmlSource, shapes.render(events, "xml").encode())
    assert rep.skipped == {} and accounted(rep)
    drop = {"src_format", "src_record", "caller_module", "caller_offset",
            "caller_unbacked", "call_stack_summary", "call_trace"}  # fmt: skip
    assert pick(rows, drop) == pick(flat, drop)
    assert [r["src_record"] for r in rows] == list(range(1, len(rows) + 1))


@pytest.mark.parametrize("run", RUNS)
def test_elastic_rendering_reads_the_same(run: str) -> None:
    events, flat = recorded(run)
    rows, rep = read(ElasticDefendSource, shapes.render(events, "elastic").encode())
    assert rep.skipped == {} and accounted(rep)
    keep = ["time", "kind", "activity", "pid", "base_address", "region_size", "protection",
            "old_protection", "alloc_type", "alloc_base", "alloc_protection", "region_type",
            "caller_module", "caller_unbacked", "remote_ip", "remote_port", "module_path",
            "module_base", "module_size"]  # fmt: skip
    expected = [r for r in flat if r["kind"] != "thread"]  # Defend has no plain thread events
    assert [[r.get(k) for k in keep] for r in rows] == [[r.get(k) for k in keep] for r in expected]
    memory = [r for r in rows if r["kind"] == "memory"]
    assert [r["tid"] for r in memory] == [r["tid"] for r in expected if r["kind"] == "memory"]
    assert len({r["process_uid"] for r in rows}) == 1
    if run.endswith("reflective"):
        assert [r["call_stack_summary"] for r in memory if r.get("caller_unbacked")] == [
            "kernel32.dll|Unbacked",
            "kernel32.dll|Unbacked",
        ]
