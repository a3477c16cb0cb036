"""Every detector id an alert can name has its section in docs/rules.md, and alerts link to it."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import pytest

from tests.support.events import events, remote_thread
from unbacked.correlate.incidents import FOLLOWUP_CHILD, FOLLOWUP_CONNECT, correlate
from unbacked.detect import DetectionContext, ProgramBaseline, run_rules
from unbacked.detect.anomaly import DETECTOR_ID as BASELINE_ID
from unbacked.detect.rules import load_rules
from unbacked.model.alert import rule_doc
from unbacked.render import render
from unbacked.render.html import render_html

DOC = Path(__file__).resolve().parents[2] / "docs" / "rules.md"
PS = r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe"
NP = r"C:\Windows\System32\notepad.exe"
SECTIONS = ("**Means.**", "**Evidence.**", "**Known false positives.**", "**Check next.**")


def _sections() -> dict[str, str]:
    """anchor -> the text of its section (up to the next anchor)."""
    text = DOC.read_text(encoding="utf-8")
    parts = re.split(r'<a id="([^"]+)"></a>', text)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def _detectors() -> list[str]:
    return [*load_rules(), BASELINE_ID, FOLLOWUP_CONNECT[0], FOLLOWUP_CHILD[0], "memscan"]


def test_rule_doc_link_from_id():
    rules = load_rules()
    assert rules["UNB-W-001"].doc() == "docs/rules.md#unb-w-001"
    assert rules["UNB-L-004"].metadata()["doc"] == "docs/rules.md#unb-l-004"
    assert rule_doc("memscan") == "docs/rules.md#memscan"


@pytest.mark.parametrize("detector", _detectors())
def test_every_detector_has_a_section(detector):
    sections = _sections()
    anchor = rule_doc(detector).split("#", 1)[1]
    assert anchor in sections, f"docs/rules.md has no section for {detector}"
    body = sections[anchor]
    heading = body.strip().splitlines()[0]
    assert heading.startswith(f"## {detector} ")
    for part in SECTIONS:
        assert part in body, f"{detector}: section lacks {part}"
        after = body.split(part, 1)[1].strip()
        assert len(after.split("**", 1)[0].split()) >= 5, f"{detector}: {part} is empty"


def test_no_section_without_a_detector():
    known = {rule_doc(d).split("#", 1)[1] for d in _detectors()}
    assert set(_sections()) == known


@pytest.fixture(scope="module")
def alerts():
    ctx = DetectionContext.build(events([remote_thread("inj", PS, "victim", NP, 0x590000)]))
    ctx.baseline = ProgramBaseline().learn(ctx.facts, calibrate=False)
    return correlate(ctx, run_rules(ctx))


def test_alert_carries_the_links(alerts):
    buf = io.StringIO()
    render(alerts, "ocsf", buf)
    d = json.loads(buf.getvalue())
    expl = d["unmapped"]["unbacked"]["explanation"]
    assert expl and all(e["doc"] == rule_doc(e["detector"]) for e in expl)
    related = d["finding_info"]["analytic"]["related_analytics"]
    assert [r["uid"] for r in related] == d["unmapped"]["unbacked"]["detectors"]
    assert "UNB-W-001" in [r["uid"] for r in related]
    assert all(rule_doc(r["uid"]) in r["desc"] for r in related)


def test_table_and_html_show_the_links(alerts):
    buf = io.StringIO()
    render(alerts, "table", buf)
    text = buf.getvalue()
    assert "[UNB-W-001]" in text and "docs/rules.md#<rule id>" in text
    page = render_html(alerts)
    # self-contained: the header links to the alert's detector card, which names the page
    assert 'href="#a0-unb-w-001"' in page and 'id="a0-unb-w-001"' in page
    assert "<code>docs/rules.md#unb-w-001</code>" in page
    assert "Remote thread started in memory no module backs" in page
