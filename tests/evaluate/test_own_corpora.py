"""The project's own corpora are labelled (scripts/label-samples.py) and `unbacked eval` runs on
them. The assertions are about the labels and the metric arithmetic, never about how many
attacks the detector catches: that number lives in docs/detection.md with its command."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.bare import NO_PANDAS
from unbacked.evaluate import evaluate, load_labels
from unbacked.evaluate.metrics import data_file_of

REPO = Path(__file__).resolve().parents[2]
LABELS = REPO / "samples" / "labels"
CAPTURES = sorted(
    [p for p in (REPO / "samples" / "linux").glob("*") if p.suffix in (".jsonl", ".parquet")]
    + list((REPO / "tests" / "fixtures" / "windows").glob("*/*.jsonl"))
)


def test_every_capture_has_a_valid_label():
    labels = load_labels(LABELS)  # raises InputError on any invalid file
    keys = {p.relative_to(REPO).as_posix() for p in CAPTURES}
    assert set(labels) == keys
    for key, lab in labels.items():
        name = Path(key).name
        attack = name.startswith("control-") or "/triggered/" in key
        assert (len(lab.malicious) >= 1) is attack, key
        for inst in lab.malicious:
            assert inst.guid and inst.pid and inst.required, (key, inst)
        assert lab.process_instances >= len(lab.malicious) + len(lab.other)


#: runs a script as ``python SCRIPT ARGS`` does, with pandas not installed as far as it can tell
_WITHOUT_PANDAS = (
    NO_PANDAS
    + """
import runpy
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name="__main__")
"""
)


@pytest.mark.parametrize("pandas", ["installed", "absent"])
def test_labels_are_regenerated_from_the_captures(pandas: str):
    """Labels come from the recording recipes; a re-recorded capture needs a regenerated label.
    The script needs no pandas (a bare install has none): nanosecond times come out through
    ``model.rows.to_rows``."""
    if pandas == "installed":
        pytest.importorskip("pandas")
    script = [str(REPO / "scripts" / "label-samples.py"), "--check"]
    argv = script if pandas == "installed" else ["-c", _WITHOUT_PANDAS, *script]
    proc = subprocess.run(
        [sys.executable, *argv],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_labelled_instances_exist_in_their_capture():
    from unbacked.sources import read_events

    labels = load_labels(LABELS)
    for key, lab in labels.items():
        if not lab.malicious:
            continue
        uids = set(read_events([REPO / key]).column("process_uid").to_pylist())
        for inst in lab.malicious:
            assert any(u and u.lower() == inst.guid for u in uids), (key, inst.guid)


@pytest.fixture(scope="module")
def eval_report(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("own") / "eval.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "unbacked.cli.main",
            "eval",
            "samples/linux",
            "tests/fixtures/windows",
            "--labels",
            "samples/labels",
            "--data-root",
            ".",
            "-q",
            "-o",
            str(out),
        ],
        capture_output=True,
        text=True,
        cwd=REPO,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(out.read_text())


def test_eval_on_own_corpora_arithmetic(eval_report):
    labels = load_labels(LABELS)
    files = {f["file"]: f for f in eval_report["files"]}
    assert set(files) == set(labels)
    for key, lab in labels.items():
        f = files[key]
        assert f["malicious"] == len(lab.malicious)
        assert f["caught"] + len(f["missed"]) == f["malicious"]
        assert f["benign_instances"] == lab.process_instances - len(lab.malicious) - len(lab.other)
    t = eval_report["totals"]
    assert t["malicious"] == sum(len(lab.malicious) for lab in labels.values())
    assert t["caught"] == sum(f["caught"] for f in files.values())
    assert t["recall"] == round(t["caught"] / t["malicious"], 4)
    assert t["false_alerts"] == sum(len(f["false_alerts"]) for f in files.values())
    assert t["benign_instances"] == sum(f["benign_instances"] for f in files.values())
    assert t["false_per_10k_benign"] == round(10_000 * t["false_alerts"] / t["benign_instances"], 3)
    # every capture is labelled, so no alert can rest on an unlabelled file
    assert t["unlabelled_alerts"] == 0


def test_eval_reports_each_input_path_as_a_corpus(eval_report):
    rows = eval_report["corpora"]
    assert list(rows) == ["samples/linux", "tests/fixtures/windows"]
    assert {f["corpus"] for f in eval_report["files"]} == set(rows)
    for k in ("malicious", "caught", "false_alerts", "benign_instances"):
        assert sum(r[k] for r in rows.values()) == eval_report["totals"][k]


def test_alert_provenance_maps_to_label_keys():
    """Captures store their path relative to the repository: eval from the root finds them."""
    from unbacked.sources import read_events

    for cap in CAPTURES:
        src = read_events([cap]).column("src_file").unique().to_pylist()
        assert [data_file_of(s, REPO) for s in src] == [cap.relative_to(REPO).as_posix()]


def test_evaluate_counts_an_alert_on_a_control_as_caught():
    """The label keys and uids line up with what alerts carry (one synthetic alert per
    control instance, built from the label itself)."""
    from datetime import UTC, datetime

    from unbacked.model.alert import Alert, ProcessRef

    labels = load_labels(LABELS)
    alerts = []
    for key, lab in labels.items():
        for inst in lab.malicious:
            alerts.append(
                Alert(
                    uid=f"a-{inst.guid}",
                    title="t",
                    message="m",
                    risk_score=90,
                    severity_id=4,
                    first_seen=datetime(2026, 1, 1, tzinfo=UTC),
                    last_seen=None,
                    hostname=inst.host,
                    process=ProcessRef(uid=inst.guid, pid=inst.pid, name="x"),
                    sources=({"file": key},),
                )
            )
    res = evaluate(alerts, labels, REPO)
    t = res.totals
    assert t["caught"] == t["malicious"] == len(alerts)
    assert t["false_alerts"] == 0
