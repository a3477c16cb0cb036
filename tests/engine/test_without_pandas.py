"""The alert path needs no pandas: pyarrow turns nanosecond timestamps into Python objects only
through pandas, so every row taken into Python goes through ``unbacked.model.rows``. The Linux
sensor's times are nanoseconds; a run on its captures in a Python where pandas cannot be
imported gives the same alerts, byte for byte, as a run where it can."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest

from tests.support.bare import NO_PANDAS
from unbacked.engine.local import hunt
from unbacked.model.rows import python_table, to_rows, to_values
from unbacked.render.ocsf import write_ocsf

REPO = Path(__file__).resolve().parents[2]
SAMPLES = REPO / "samples" / "linux"

_CHILD = (
    NO_PANDAS
    + """
from unbacked.engine.local import hunt
from unbacked.render.ocsf import write_ocsf
write_ocsf(hunt(sys.argv[1:]).alerts, sys.stdout)
assert "pandas" not in sys.modules
"""
)


def _controls() -> list[str]:
    files = sorted(str(p) for p in SAMPLES.glob("control-*.jsonl"))
    if not files:
        pytest.skip(f"no sensor captures in {SAMPLES}")
    return files


def test_linux_alerts_without_pandas_match():
    files = _controls()
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"))
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, *files],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    buf = io.StringIO()
    write_ocsf(hunt(files).alerts, buf)
    expected = buf.getvalue()
    assert out.stdout.count("\n") >= 5  # the positive controls alert
    assert out.stdout == expected


def test_rows_keep_nanoseconds_for_ordering():
    ns = [1_795_512_272_158_831_318, 1_795_512_272_158_831_319, None]
    table = pa.table({"time": pa.array(ns, pa.timestamp("ns", tz="UTC")), "x": [1, 2, 3]})
    rows = to_rows(table, keep_ns=("time",))
    assert [r["time_ns"] for r in rows] == ns
    assert rows[0]["time"] == rows[1]["time"]  # the same microsecond, finer digits cut off
    assert rows[0]["time"].microsecond == 158831 and rows[0]["time"].tzinfo is not None
    assert rows[2]["time"] is None
    assert to_values(table["time"])[0] == rows[0]["time"]
    assert python_table(table).schema.field("time").type == pa.timestamp("us", tz="UTC")


def test_notebook_reprs_are_short():
    result = hunt(_controls())
    text = repr(result)
    assert text.startswith("<HuntResult: ") and len(text) < 400
    assert f"{len(result.alerts)} alerts" in text and "top: " in repr(result.alerts)
    html = result._repr_html_()
    assert "<table>" in html and html.count("<tr>") == len(result.alerts) + 1
    assert repr(type(result.alerts)([])) == "<Alerts: none>"
