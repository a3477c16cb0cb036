"""Metric arithmetic on small hand-labelled cases."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from unbacked.errors import InputError
from unbacked.evaluate import evaluate, load_label, load_labels
from unbacked.model.alert import Alert, ProcessRef


def _label(root: Path, name: str, malicious, other=(), instances=10):
    lab = {
        "file": f"data/{name}",
        "scope": "attack",
        "process_instances": instances,
        "malicious_count": len(malicious),
        "malicious": [
            {
                "role": "injected",
                "host": h,
                "process_guid": g,
                "pid": p,
                "image": i,
                "attack_ids": ["T1055"],
                "disk_backed": False,
                "confidence": "confirmed",
                "evidence": [{"utc_time": "2024-01-01 12:00:00.000"}],
            }
            for h, g, p, i in malicious
        ],
        "other_malicious_not_injection": [
            {"host": h, "process_guid": g, "pid": p, "image": i} for h, g, p, i in other
        ],
    }
    path = root / "labels" / "data" / (name + ".json")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(lab))
    return path


def _alert(file, host, uid, pid, name, actor=None):
    from datetime import UTC, datetime

    return Alert(
        uid=f"{uid}-{pid}",
        title="t",
        message="m",
        risk_score=90,
        severity_id=5,
        first_seen=datetime(2024, 1, 1, 12, 0, 5, tzinfo=UTC),
        last_seen=None,
        hostname=host,
        process=ProcessRef(uid=uid, pid=pid, name=name),
        actor=actor,
        sources=({"file": file, "records": [1]},),
    )


@pytest.fixture()
def root(tmp_path):
    (tmp_path / "data").mkdir()
    _label(
        tmp_path,
        "a.evtx",
        [("H1", "{AAAA-1}", 10, r"C:\x\notepad.exe"), ("H1", None, 20, r"C:\x\evil.exe")],
        other=[("H1", None, 30, r"C:\x\cmd.exe")],
    )
    _label(tmp_path, "b.evtx", [("H2", None, 10, r"C:\x\notepad.exe")])
    return tmp_path


def test_metrics(root):
    labels = load_labels(root / "labels")
    fa = str(root / "data" / "a.evtx")
    fb = str(root / "data" / "b.evtx")
    alerts = [
        _alert(fa, "H1", "aaaa-1", 10, "notepad.exe"),  # caught by guid (case/braces differ)
        _alert(fa, "H1", "aaaa-1", 10, "notepad.exe"),  # double: still one caught instance
        _alert(fa, "H1", "zz", 99, "calc.exe", actor=ProcessRef(uid="q", pid=20, name="evil.exe")),
        _alert(fa, "H1", "yy", 30, "cmd.exe"),  # other malicious: neutral
        _alert(fa, "H1", "xx", 40, "svchost.exe"),  # false
        # same pid 10 and image as b's instance, but on H1 and in file a: must not match b
        _alert(fb, "H9", "ww", 10, "notepad.exe"),  # false for b (host differs)
        _alert(str(root / "data" / "unlabelled.evtx"), "H3", "vv", 5, "x.exe"),
    ]
    ev = evaluate(alerts, labels, root, signalled=[("aaaa-1", None)])
    by = {f.file: f for f in ev.files}
    a, b = by["data/a.evtx"], by["data/b.evtx"]
    assert len(a.caught) == 2 and a.missed == []
    assert a.neutral_alerts == 1 and len(a.false_alerts) == 1
    assert a.benign_instances == 10 - 2 - 1
    assert a.time_to_alert == [5.0, 5.0]
    assert len(b.caught) == 0 and b.missed[0][1] == "no telemetry signal"
    assert len(b.false_alerts) == 1
    t = ev.totals
    assert t["malicious"] == 3 and t["caught"] == 2 and t["false_alerts"] == 2
    assert t["unlabelled_alerts"] == 1
    assert t["false_per_10k_benign"] == round(10_000 * 2 / (7 + 9), 3)
    assert ev.by_technique["T1055"] == {"malicious": 3, "caught": 2}


def test_bad_label_file_says_what_is_wrong(tmp_path):
    p = tmp_path / "x.json"
    p.write_text(
        json.dumps({"file": "x", "malicious": [{"role": "injected"}], "malicious_count": 2})
    )
    with pytest.raises(InputError) as err:
        load_label(p)
    msg = str(err.value)
    assert "malicious[0]: missing host, pid, image" in msg and "malicious_count 2 != 1" in msg
    p.write_text("{")
    with pytest.raises(InputError, match="not readable JSON"):
        load_label(p)


def test_shared_labels_validate(shared_data):
    labels = load_labels(shared_data / "labels")
    assert len(labels) >= 20


def test_threshold_curve_filters_by_risk(root):
    from dataclasses import replace

    from unbacked.evaluate import threshold_curve

    labels = load_labels(root / "labels")
    fa = str(root / "data" / "a.evtx")
    caught = _alert(fa, "H1", "aaaa-1", 10, "notepad.exe")
    false = replace(_alert(fa, "H1", "xx", 40, "svchost.exe"), risk_score=45)
    curve = {c["threshold"]: c for c in threshold_curve([caught, false], labels, root, (40, 50))}
    assert curve[40]["alerts"] == 2 and curve[40]["false_alerts"] == 1
    assert curve[50]["alerts"] == 1 and curve[50]["false_alerts"] == 0
    assert curve[40]["caught"] == curve[50]["caught"] == 1


def test_per_corpus_rows(root):
    """Each file belongs to the longest given corpus path holding it; rows sum to the totals."""
    from unbacked.evaluate.metrics import corpus_markdown, corpus_of

    assert corpus_of("wide/x/a.evtx", ["windows", "wide"]) == "wide"
    assert corpus_of("wide/x/a.evtx", ["wide", "wide/x"]) == "wide/x"
    assert corpus_of("wide/x/a.evtx", ["widex"]) == "wide"  # no prefix match: top folder
    assert corpus_of("a.evtx", []) == "."
    _label(root, "sub/c.evtx", [("H3", None, 7, r"C:\x\notepad.exe")], instances=4)
    labels = load_labels(root / "labels")
    fa = str(root / "data" / "a.evtx")
    alerts = [_alert(fa, "H1", "aaaa-1", 10, "notepad.exe"), _alert(fa, "H1", "x", 4, "a.exe")]
    ev = evaluate(alerts, labels, root, corpora=["data/sub", "data"])
    assert [f.corpus for f in ev.files] == ["data/sub", "data", "data"]  # in the given order
    rows = ev.corpora
    assert list(rows) == ["data/sub", "data"]
    assert rows["data/sub"]["files"] == 1 and rows["data/sub"]["benign_instances"] == 3
    assert rows["data"]["caught"] == 1 and rows["data"]["malicious"] == 3
    assert rows["data"]["false_alerts"] == 1 and rows["data"]["benign_instances"] == 7 + 9
    assert rows["data"]["false_per_10k_benign"] == round(10_000 / 16, 3)
    for k in ("malicious", "caught", "required", "false_alerts", "benign_instances"):
        assert sum(r[k] for r in rows.values()) == ev.totals[k]
    md = corpus_markdown(ev)
    assert "| data/sub | 1 | 0/1 | 0/1 | 0 | 0.0 | 3 |" in md
    assert "| **all** | 3 |" in md
