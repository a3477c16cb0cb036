"""Explanation lines ranked and pruned: the strongest reasons shown, the rest behind a count, all
of them kept, ranked, in the OCSF explanation[]."""

from __future__ import annotations

import io
import json
from dataclasses import replace

from tests.support.events import connect, events, remote_thread
from unbacked.correlate.incidents import MAX_EXPLANATION, _explanation, correlate
from unbacked.detect import DetectionContext, ProgramBaseline, run_rules
from unbacked.model.alert import EXPLAIN_SHOWN, Alert, Explanation, ProcessRef
from unbacked.render import render
from unbacked.render.html import render_html

PS = r"C:\Windows\System32\WindowsPowerShell\v1.0\powershell.exe"
NP = r"C:\Windows\System32\notepad.exe"


def _alert(n: int) -> Alert:
    # scores out of order on purpose: 10, 53, 16, 59, ... (distinct), plus one tie pair
    lines = [
        Explanation(f"f{i:02d}", f"v{i}", "UNB-B-001", float((i * 43) % 97), f"reason {i:02d}")
        for i in range(n)
    ]
    lines.append(Explanation("zz", "tie", "UNB-W-001", lines[0].score, "tie with reason 00"))
    return Alert(
        uid="u1", title="t", message="m", risk_score=90, severity_id=5, first_seen=None,
        last_seen=None, hostname="h", process=ProcessRef(uid="p", pid=1, name="x.exe"),
        explanation=tuple(lines), detectors=("UNB-B-001", "UNB-W-001"),
    )  # fmt: skip


def test_ocsf_keeps_every_line_ranked():
    a = _alert(12)
    d = a.to_ocsf()
    expl = d["unmapped"]["unbacked"]["explanation"]
    assert len(expl) == 13
    assert [e["rank"] for e in expl] == list(range(1, 14))
    scores = [e["score"] for e in expl]
    assert scores == sorted(scores, reverse=True)
    # ties in a fixed order (detector, feature, value): the baseline line before the rule's
    tie = [e["feature"] for e in expl if e["score"] == round(a.explanation[0].score, 3)]
    assert tie == ["f00", "zz"]
    back = Alert.from_ocsf(json.loads(json.dumps(d)))
    assert back.to_ocsf() == d


def test_top_reasons():
    a = _alert(12)
    top, hidden = a.top_reasons()
    assert len(top) == EXPLAIN_SHOWN and hidden == 13 - EXPLAIN_SHOWN
    assert top[0].score == max(e.score for e in a.explanation)
    assert _alert(1).top_reasons() == (sorted(_alert(1).explanation, key=lambda e: e.feature), 0)


def test_table_shows_the_strongest_and_a_count():
    a = _alert(12)
    buf = io.StringIO()
    render([a], "table", buf)
    text = buf.getvalue()
    ranked = sorted(a.explanation, key=lambda e: -e.score)
    assert f"{ranked[0].message} [UNB-B-001]; {ranked[1].message} [UNB-B-001]; +11 more" in text
    assert ranked[2].message not in text


def test_html_shows_five_and_folds_the_rest():
    page = render_html([_alert(12)])
    shown, _, folded = page.partition("+8 more reasons</summary>")
    assert folded, "the rest of the reasons are behind a count"
    ranked = sorted(_alert(12).explanation, key=lambda e: -e.score)
    expl = shown[shown.index('<table class="explain">') :]
    assert all(e.message in expl for e in ranked[:EXPLAIN_SHOWN])
    assert not any(e.message in expl for e in ranked[EXPLAIN_SHOWN:])
    assert all(e.message in folded for e in ranked[EXPLAIN_SHOWN:])
    one = replace(_alert(1), explanation=_alert(1).explanation[:1])
    assert "more reason" not in render_html([one])


def _sig(detector: str, feature: str, value: str, score: float) -> dict:
    return {"detector": detector, "feature": feature, "value": value, "score": score,
            "message": f"{feature}={value}", "title": detector, "baseline_count": None,
            "baseline_total": None, "baseline_scope": None}  # fmt: skip


def test_correlation_ranks_followups_among_the_rest_and_counts_the_cut():
    sigs = [_sig("UNB-B-001", "f", "a", 20.0), _sig("UNB-W-001", "t", "b", 85.0),
            _sig("UNB-W-001", "t", "b", 60.0)]  # fmt: skip
    row = {"kind": "network", "remote_ip": "10.0.0.1", "remote_port": 443, "image": None}
    followup = ("UNB-C-001", "Network connection after foreign code ran", 40.0, "T1071", row)
    lines, omitted = _explanation(sigs, [followup])
    assert [(e.detector, e.score) for e in lines] == [
        ("UNB-W-001", 85.0), ("UNB-C-001", 40.0), ("UNB-B-001", 20.0)]  # fmt: skip
    assert omitted == 0
    many = [_sig("UNB-B-001", "f", str(i), float(i % 90)) for i in range(MAX_EXPLANATION + 7)]
    lines, omitted = _explanation(many, [])
    assert len(lines) == MAX_EXPLANATION and omitted == 7
    assert lines[0].score == 89.0


def test_alert_message_counts_the_other_reasons():
    one = [remote_thread("inj", PS, "victim", NP, 0x590000)]
    two = [*one, connect("victim", NP)]  # a follow-up: a second reason
    for evs, hidden in ((one, 0), (two, 1)):
        ctx = DetectionContext.build(events(evs))
        ctx.baseline = ProgramBaseline().learn(ctx.facts, calibrate=False)
        (a,) = correlate(ctx, run_rules(ctx))
        assert len(a.explanation) - 1 == hidden, a.explanation
        if hidden:
            assert a.message.endswith(f"; +{hidden} more reason")
        else:
            assert "more reason" not in a.message
