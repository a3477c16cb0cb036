"""Compare two runs' alerts and baselines: exact equality, except floats to 1e-9 (engine
parity: Spark vs embedded, partitioned vs in memory)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

TOLERANCE = 1e-9


def differences(a: Any, b: Any, path: str = "$") -> list[str]:
    """Where ``a`` and ``b`` (JSON-like values) differ; floats compare to ``TOLERANCE``."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = [f"{path}.{k}: only on one side" for k in sorted(set(a) ^ set(b))]
        for k in sorted(set(a) & set(b)):
            out += differences(a[k], b[k], f"{path}.{k}")
        return out
    if isinstance(a, list) and isinstance(b, list):
        if len(a) != len(b):
            return [f"{path}: {len(a)} vs {len(b)} items"]
        out = []
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            out += differences(x, y, f"{path}[{i}]")
        return out
    if isinstance(a, float) or isinstance(b, float):
        ok = (
            isinstance(a, int | float)
            and isinstance(b, int | float)
            and math.isclose(a, b, rel_tol=0.0, abs_tol=TOLERANCE)
        )
        return [] if ok else [f"{path}: {a!r} vs {b!r}"]
    return [] if a == b else [f"{path}: {str(a)[:200]!r} vs {str(b)[:200]!r}"]


def alert_dicts(alerts: Any) -> list[dict[str, Any]]:
    return [a.to_ocsf() for a in alerts]


def saved_baseline(directory: Path) -> dict[str, Any]:
    """A saved baseline's content: the manifest without the learning time (the table files are
    covered by their SHA-256 in the manifest)."""
    manifest = json.loads((directory / "manifest.json").read_text())
    manifest["meta"].pop("learned_at", None)
    manifest.pop("checksum", None)  # covers the learning time too
    return manifest


#: the learned tables of a ``ProgramBaseline``
BASELINE_TABLES = ("counts_", "totals_", "population_", "population_totals_", "thresholds_")


def assert_same_baseline(a: Any, b: Any) -> None:
    """Two learned baselines: equal tables (schema and rows) and metadata but the time."""
    for name in BASELINE_TABLES:
        ta, tb = getattr(a, name), getattr(b, name)
        assert ta.schema == tb.schema, name
        assert ta.equals(tb), f"{name}: {ta.num_rows} vs {tb.num_rows} rows differ"
    assert {k: v for k, v in a.meta_.items() if k != "learned_at"} == {
        k: v for k, v in b.meta_.items() if k != "learned_at"
    }


def assert_same_alerts(a: Any, b: Any) -> None:
    diffs = differences(alert_dicts(a), alert_dicts(b))
    assert diffs == [], "\n".join(diffs[:20])
