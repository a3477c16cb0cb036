"""OCSF / ECS / table renderers of the same alerts."""

from __future__ import annotations

import io
import json

import pytest

from tests.support.events import events, remote_thread
from unbacked.correlate.incidents import correlate
from unbacked.detect import DetectionContext, ProgramBaseline, run_rules
from unbacked.errors import FormatError
from unbacked.render import RENDERERS, read_alerts, render

PS = r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe"
NP = r"C:\Windows\System32\notepad.exe"


@pytest.fixture(scope="module")
def alerts():
    ctx = DetectionContext.build(events([remote_thread("inj", PS, "victim", NP, 0x590000)]))
    ctx.baseline = ProgramBaseline().learn(ctx.facts, calibrate=False)
    return correlate(ctx, run_rules(ctx))


def test_ocsf_contract(alerts, tmp_path):
    buf = io.StringIO()
    render(alerts, "ocsf", buf)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 1
    d = json.loads(lines[0])
    for key in (
        "time",
        "severity_id",
        "risk_score",
        "message",
        "finding_info",
        "process",
        "device",
        "attacks",
        "unmapped",
    ):
        assert key in d
    assert d["class_uid"] == 2004
    fi = d["finding_info"]
    assert {"uid", "title", "types", "first_seen_time", "last_seen_time"} <= set(fi)
    u = d["unmapped"]["unbacked"]
    assert {"explanation", "timeline", "regions", "network", "verification", "sources"} <= set(u)
    assert 1 <= d["severity_id"] <= 5 and 0 <= d["risk_score"] <= 100
    p = tmp_path / "a.jsonl"
    p.write_text(buf.getvalue())
    back = read_alerts(p)
    assert back[0].uid == alerts[0].uid


def test_ecs_names(alerts):
    buf = io.StringIO()
    render(alerts, "ecs", buf)
    d = json.loads(buf.getvalue())
    assert d["event"]["kind"] == "alert"
    assert d["process"]["entity_id"] == "victim"
    assert d["threat"]["framework"] == "MITRE ATT&CK"
    assert "@timestamp" in d and d["unbacked"]["actor"]["process"]["entity_id"] == "inj"


def test_table(alerts):
    buf = io.StringIO()
    render(alerts, "table", buf)
    text = buf.getvalue()
    assert "notepad.exe" in text and "powershell.exe" in text
    buf = io.StringIO()
    render([], "table", buf)
    assert "no alerts" in buf.getvalue()


def test_registry():
    assert {"ocsf", "ecs", "table"} <= set(RENDERERS)
    with pytest.raises(ValueError):
        render([], "xml", io.StringIO())


def test_read_alerts_rejects_bad_lines(tmp_path):
    p = tmp_path / "x.jsonl"
    p.write_text('{"class_uid": 2004}\n{not json\n')
    with pytest.raises(FormatError, match="line 2"):
        read_alerts(p)
    p.write_text('{"class_uid": 1007}\n')
    with pytest.raises(FormatError, match="Detection Finding"):
        read_alerts(p)
