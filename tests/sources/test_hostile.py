"""Property tests: hostile JSON lines never raise, every line is accounted for.

Inputs are built from real-shaped records (the sources' own examples) by truncating lines,
swapping value types, injecting junk lines and bytes, and from arbitrary JSON values.
"""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from unbacked.model import EVENT_SCHEMA
from unbacked.runreport import RunReport
from unbacked.sources import InputFile, Source
from unbacked.sources.native import NativeJsonlSource
from unbacked.sources.ocsf import OcsfJsonSource
from unbacked.sources.sysmon_json import SysmonJsonSource, WinlogbeatSource

from .util import accounted

JSON_SOURCES: list[type[Source]] = [
    SysmonJsonSource,
    WinlogbeatSource,
    OcsfJsonSource,
    NativeJsonlSource,
]

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def _example_objects(cls: type[Source]) -> list[dict[str, Any]]:
    return [orjson.loads(line) for ex in cls.examples for line in ex.splitlines() if line]


def _mutate(obj: dict[str, Any], data: st.DataObject) -> dict[str, Any]:
    """Replace some values (top level or one level down) by arbitrary JSON values."""
    out = dict(obj)
    keys = sorted(out)
    for key in data.draw(st.lists(st.sampled_from(keys), max_size=4), label="keys"):
        if isinstance(out[key], dict) and out[key] and data.draw(st.booleans()):
            inner = dict(out[key])
            sub = data.draw(st.sampled_from(sorted(inner)))
            inner[sub] = data.draw(json_values)
            out[key] = inner
        else:
            out[key] = data.draw(json_values, label=key)
    return out


def _dumps(value: Any) -> bytes:
    """JSON text of ``value``; the stdlib writes integers beyond 64 bits (hostile on purpose)."""
    return json.dumps(value, ensure_ascii=False).encode("utf-8", "surrogatepass")


def _line(cls: type[Source], data: st.DataObject) -> bytes:
    kind = data.draw(
        st.sampled_from(["example", "mutated", "truncated", "json", "bytes", "blank"]),
        label="kind",
    )
    objs = _example_objects(cls)
    base = data.draw(st.sampled_from(objs))
    if kind == "example":
        return orjson.dumps(base)
    if kind == "mutated":
        return _dumps(_mutate(base, data))
    if kind == "truncated":
        raw = orjson.dumps(base)
        return raw[: data.draw(st.integers(min_value=1, max_value=len(raw) - 1))]
    if kind == "json":
        return _dumps(data.draw(json_values))
    if kind == "bytes":
        return data.draw(st.binary(max_size=40)).replace(b"\n", b" ")
    return data.draw(st.sampled_from([b"", b"   ", b"\r", b"\t"]))


def _read_all(cls: type[Source], blob: bytes) -> RunReport:
    report = RunReport()
    for table in cls().read(InputFile.from_bytes("h.jsonl", blob), report):
        assert table.schema.equals(EVENT_SCHEMA, check_metadata=True)
        assert table.column("time").null_count == 0
        assert table.column("kind").null_count == 0
    return report


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(data=st.data())
def test_hostile_lines_never_raise_and_are_accounted(data: st.DataObject) -> None:
    cls = data.draw(st.sampled_from(JSON_SOURCES), label="source")
    lines = [_line(cls, data) for _ in range(data.draw(st.integers(1, 12), label="n"))]
    blob = b"\n".join(lines) + data.draw(st.sampled_from([b"", b"\n", b"\r\n"]))
    report = _read_all(cls, blob)
    rep = report.files["h.jsonl"]
    assert accounted(rep), rep.to_dict()
    nonblank = sum(1 for line in blob.split(b"\n") if line.strip())
    assert rep.records == nonblank


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(blob=st.binary(max_size=400))
def test_arbitrary_bytes_never_raise(blob: bytes) -> None:
    for cls in JSON_SOURCES:
        rep = _read_all(cls, blob).files["h.jsonl"]
        assert accounted(rep)
        assert rep.events == 0 or cls is NativeJsonlSource
