"""The Linux rules (UNB-L-001, UNB-L-002) on real captures of this sensor: each has a
true-positive (a positive control) and a false-positive fixture (the benign JIT suite)."""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pytest

from tests.support.events import exact_rows
from unbacked.detect.base import DetectionContext
from unbacked.detect.rules.linux import (
    LINUX_RULES,
    AnonymousWriteToExecFlip,
    ConnectAfterForeignCode,
)
from unbacked.engine.local import load_events
from unbacked.model.schema import conform
from unbacked.runreport import RunReport

SAMPLES = Path(__file__).resolve().parents[2] / "samples" / "linux"


def _ctx(pattern: str) -> DetectionContext:
    files = sorted(SAMPLES.glob(pattern))
    if not files:
        pytest.skip(f"no captures {pattern} (scripts/record-samples.sh)")
    return DetectionContext.build(load_events(files, RunReport(strict=True)))


def test_flip_true_positive_ctypes_shellcode() -> None:
    ctx = _ctx("control-shellcode-py-wx.jsonl")
    sig = AnonymousWriteToExecFlip().evaluate(ctx)
    assert sig.num_rows == 1
    row = exact_rows(sig)[0]
    assert row["detector"] == "UNB-L-001"
    assert row["value"] == "writable -> executable by libffi.so.8.1.2"
    assert row["subject_uid"].split(":")[1].isdigit()


def test_flip_true_positive_reflective_loaders() -> None:
    for pattern, caller in (
        ("control-loader-wx.jsonl", "loader"),
        ("control-loader-syscall.jsonl", "<unbacked>"),
    ):
        sig = AnonymousWriteToExecFlip().evaluate(_ctx(pattern))
        assert sig.num_rows >= 1, pattern
        assert any(v.endswith(caller) for v in sig["value"].to_pylist()), pattern


def test_flip_false_positive_jit_suite() -> None:
    """LuaJIT's RW- -> R-X code flips, HotSpot's and V8's carve-outs: none fire."""
    ctx = _ctx("benign-*.parquet")
    assert AnonymousWriteToExecFlip().evaluate(ctx).num_rows == 0


def test_flip_false_positive_jit_caller_synthetic() -> None:
    """The same flip from a JIT engine's module is not the loader shape."""
    ev = conform(
        {
            "time": pa.array([1, 2], pa.timestamp("ns", tz="UTC")),
            "kind": ["memory"] * 2,
            "activity": ["protect"] * 2,
            "os": ["linux"] * 2,
            "src_format": ["test"] * 2,
            "process_uid": ["h:1:1", "h:2:2"],
            "image": ["/x/a"] * 2,
            "protection": pa.array([5, 5], pa.uint32()),
            "old_protection": pa.array([3, 3], pa.uint32()),
            "region_type": ["anonymous", "file"],
            "caller_module": ["libjvm.so", "app"],
        }
    )
    assert AnonymousWriteToExecFlip().evaluate(DetectionContext.build(ev)).num_rows == 0


def test_connect_true_positive_loader_then_connect() -> None:
    sig = ConnectAfterForeignCode().evaluate(_ctx("control-loader-wx-connect.jsonl"))
    assert sig.num_rows == 1
    assert sig["value"].to_pylist() == ["127.0.0.1:9"]


def test_connect_false_positive_benign_chromium_connects() -> None:
    """Chromium connects out in the benign captures, with no foreign code before: no signal."""
    ctx = _ctx("benign-*.parquet")
    conns = ctx.select(kind="network", activity="connect")
    assert conns.num_rows > 0  # the fixture really has connections to stay quiet on
    assert ConnectAfterForeignCode().evaluate(ctx).num_rows == 0


def test_connect_false_positive_connect_before_load() -> None:
    """Order matters: a connect before the foreign code is not 'after'."""
    ev = conform(
        {
            "time": pa.array([1_000, 2_000], pa.timestamp("ns", tz="UTC")),
            "kind": ["network", "memory"],
            "activity": ["connect", "protect"],
            "os": ["linux"] * 2,
            "src_format": ["test"] * 2,
            "process_uid": ["h:1:1"] * 2,
            "image": ["/x/a"] * 2,
            "protection": pa.array([None, 5], pa.uint32()),
            "old_protection": pa.array([None, 3], pa.uint32()),
            "region_type": [None, "anonymous"],
            "header_kind": [None, "elf"],
            "remote_ip": ["10.0.0.1", None],
            "remote_port": pa.array([443, None], pa.int32()),
        }
    )
    assert ConnectAfterForeignCode().evaluate(DetectionContext.build(ev)).num_rows == 0


# -- fixtures in the format of tests/detect/rule_fixtures.py, checked the same way -------------
_LINUX = {"os": "linux"}


def _mem(uid: str, image: str, old: int, new: int, caller: str | None, **kw: object) -> dict:
    return {
        "kind": "memory",
        "activity": "protect",
        "process_uid": uid,
        "image": image,
        "base_address": 0x7F0000001000,
        "region_size": 0x1000,
        "protection": new,
        "old_protection": old,
        "region_type": "anonymous",
        "caller_module": caller,
        "caller_unbacked": caller is None,
        **_LINUX,
        **kw,
    }


LINUX_RULE_FIXTURES: dict[str, dict] = {
    "UNB-L-001": {
        "tp": [_mem("py", "/usr/bin/python3.11", 0x3, 0x5, "libffi.so.8")],
        "fp": [
            _mem("lj", "/usr/bin/luajit", 0x3, 0x5, "luajit"),
            _mem("nd", "/usr/bin/node", 0x0, 0x7, "node"),
        ],
        "subject": "py",
    },
    "UNB-L-002": {
        "tp": [
            _mem("ld", "/tmp/loader", 0x3, 0x5, "loader", header_kind="elf"),
            {
                "kind": "network",
                "activity": "connect",
                "process_uid": "ld",
                "image": "/tmp/loader",
                "remote_ip": "10.0.0.5",
                "remote_port": 443,
                "direction": "outbound",
                **_LINUX,
            },
        ],
        "fp": [
            {
                "kind": "network",
                "activity": "connect",
                "process_uid": "cr",
                "image": "/usr/lib/chromium/chromium",
                "remote_ip": "10.0.0.5",
                "remote_port": 443,
                "direction": "outbound",
                **_LINUX,
            },
            _mem("cr", "/usr/lib/chromium/chromium", 0x0, 0x7, "chromium"),
        ],
        "subject": "ld",
    },
}


def _fixture_ctx(rows: list[dict]) -> DetectionContext:
    from tests.support.events import events
    from unbacked.detect import ProgramBaseline

    ctx = DetectionContext.build(events(rows), self_baselined=True)
    ctx.baseline = ProgramBaseline().learn(ctx.facts, calibrate=False)
    return ctx


@pytest.mark.parametrize("rule", LINUX_RULES, ids=lambda r: r.id)
def test_fixture_true_and_false_positive(rule: type) -> None:
    from tests.detect.rule_fixtures import FIXTURES
    from unbacked.detect import SIGNAL_SCHEMA

    fx = LINUX_RULE_FIXTURES.get(rule.id) or FIXTURES[rule.id]
    out = rule().evaluate(_fixture_ctx(fx["tp"]))
    assert out.schema.equals(SIGNAL_SCHEMA, check_metadata=False)
    assert fx["subject"] in set(out["subject_uid"].to_pylist())
    assert all(0 < s <= 100 for s in out["score"].to_pylist())
    assert rule().evaluate(_fixture_ctx(fx["fp"])).num_rows == 0


@pytest.mark.parametrize("rule", LINUX_RULES, ids=lambda r: r.id)
def test_conformance(rule: type) -> None:
    import re

    from unbacked.detect import SIGNAL_SCHEMA
    from unbacked.model.schema import EVENT_SCHEMA

    meta = rule.metadata()
    assert re.fullmatch(r"UNB-[A-Z]-\d{3}", meta["id"])
    assert meta["references"] and meta["attack"]
    assert set(meta["requires"]) <= set(EVENT_SCHEMA.names)
    out = rule().evaluate(DetectionContext.build(EVENT_SCHEMA.empty_table()))
    assert out.schema.equals(SIGNAL_SCHEMA, check_metadata=False) and out.num_rows == 0
