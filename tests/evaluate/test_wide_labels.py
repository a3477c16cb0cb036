"""The labels of the wide public corpus (``labels/wide``, made by ``scripts/label-wide.py``)
agree with the data they label: one label per data file, valid in the shared schema, the
record counts are what unbacked's sources read, and every evidence record exists where the
label says it is. Nothing here runs the detector: these are facts about the labels."""

from __future__ import annotations

import io
import json
import zipfile
from collections import defaultdict
from pathlib import Path

import pytest

from unbacked.evaluate import load_labels
from unbacked.runreport import RunReport
from unbacked.sources import iter_event_tables

REPO = Path(__file__).resolve().parents[2]
LABELS = REPO / "labels"
ROLES = {"injector", "injected", "self-injected", "payload-child"}


@pytest.fixture(scope="module")
def wide(shared_data) -> Path:
    path = shared_data / "wide"
    if not path.is_dir():
        pytest.skip(f"the wide public corpus is not available at {path}")
    return path


@pytest.fixture(scope="module")
def labels() -> dict:
    return load_labels(LABELS / "wide")  # raises InputError on any invalid file


@pytest.fixture(scope="module")
def raw(labels) -> dict[str, dict]:
    return {key: json.loads(lab.path.read_text(encoding="utf-8")) for key, lab in labels.items()}


def test_every_wide_file_has_one_label(wide, labels):
    data = {
        p.relative_to(wide.parent).as_posix()
        for p in wide.rglob("*")
        if p.is_file() and p.suffix in (".evtx", ".zip")
    }
    assert len(data) == 310
    assert set(labels) == data
    for key, lab in labels.items():
        rel = lab.path.relative_to(LABELS).with_suffix("").as_posix()
        assert rel == str(Path(key).with_suffix("")), "label stored under its data file's path"


def test_labels_are_well_formed(raw):
    for key, d in raw.items():
        assert d["malicious_count"] == len(d["malicious"]), key
        assert d["process_instances"] >= len(d["malicious"]) + len(
            d["other_malicious_not_injection"]
        ), key
        assert sum(d["hosts"].values()) == d["events"], key
        if d["malicious"]:
            assert d["scope"] == "attack", key
        for inst in d["malicious"] + d.get("possible", []):
            assert set(inst["role"].split("+")) <= ROLES, (key, inst["role"])
            assert inst["confidence"] in ("confirmed", "probable", "possible"), key
            assert inst["evidence"] and all(e["what"] for e in inst["evidence"]), key
            assert inst["attack_ids"], key
            if inst["role"] == "payload-child":
                assert inst["disk_backed"] is None, key
            elif inst["confidence"] != "possible":  # a possible case may not know how
                assert isinstance(inst["disk_backed"], bool), key
        for inst in d.get("possible", []):
            assert inst["confidence"] == "possible", key
        assert d["rationale"], key


def test_counts_are_what_the_sources_read(wide, raw):
    """``events`` + ``parse_errors`` is every record unbacked's readers saw in the file."""
    report = RunReport()
    for _ in iter_event_tables([wide], report):
        pass
    seen: dict[str, int] = defaultdict(int)
    for name, rep in report.files.items():
        outer = name.split("!", 1)[0]
        key = Path(outer).resolve().relative_to(wide.parent.resolve()).as_posix()
        seen[key] += rep.records
    for key, d in raw.items():
        if d["format"].startswith("pcap"):
            assert d["events"] == 0 and key not in seen, key
            continue
        assert seen.get(key) == d["events"] + d["parse_errors"], key


def _evtx_records(path: Path) -> dict[int, dict]:
    import evtx

    out = {}
    for i, rec in enumerate(evtx.PyEvtxParser(str(path)).records_json(), 1):
        out[i] = json.loads(rec["data"])["Event"]
    return out


def _jsonl_lines(path: Path, wanted: set[int]) -> dict[int, dict]:
    out = {}
    with zipfile.ZipFile(path) as zf:
        member = next(i for i in zf.infolist() if not i.filename.startswith("__MACOSX/"))
        with zf.open(member) as fh:
            for n, line in enumerate(io.TextIOWrapper(fh, encoding="utf-8"), 1):
                if n in wanted:
                    out[n] = json.loads(line)
    return out


def test_every_evidence_record_exists(wide, raw):
    checked = 0
    for key, d in raw.items():
        evidence = [e for inst in d["malicious"] + d.get("possible", []) for e in inst["evidence"]]
        if not evidence:
            continue
        path = wide.parent / key
        if d["format"] == "evtx":
            recs = _evtx_records(path)
            for e in evidence:
                ev = recs[e["file_record_index"]]
                system = ev["System"]
                assert system["EventRecordID"] == e["record_id"], (key, e)
                eid = system["EventID"]
                assert (eid.get("#text") if isinstance(eid, dict) else eid) == e["event_id"]
                data = ev.get("EventData") or {}
                for k, v in e["fields"].items():
                    assert str(data.get(k)).startswith(v.removesuffix("...")), (key, k)
                checked += 1
        else:
            lines = _jsonl_lines(path, {e["file_line"] for e in evidence})
            for e in evidence:
                o = lines[e["file_line"]]
                assert int(o["EventID"]) == e["event_id"], (key, e)
                if e["record_id"] is not None:
                    assert int(o["RecordNumber"]) == e["record_id"], (key, e)
                for k, v in e["fields"].items():
                    assert str(o.get(k)).startswith(v.removesuffix("...")), (key, k)
                checked += 1
    assert checked >= 40


def test_labelled_processes_appear_in_their_evidence(raw):
    """A labelled instance's evidence mentions its pid (or its GUID) in a process field."""
    for key, d in raw.items():
        for inst in d["malicious"]:
            pid = str(inst["pid"])
            name = inst["image"].replace("\\", "/").rsplit("/", 1)[-1].lower()
            keys = ("ProcessId", "SourceProcessId", "TargetProcessId", "ParentProcessId")
            assert any(
                pid in {f.get(k) for k in keys} or f.get("Image", "").lower().endswith(name)
                for f in (e["fields"] for e in inst["evidence"])
            ), (key, inst["pid"])


def test_eval_combines_label_sets_and_scores_only_the_given_paths(wide, tmp_path):
    """Curated and wide labels together, two input folders: only the labelled files under the
    inputs are scored, one corpus row per input path."""
    import subprocess
    import sys

    root = wide.parent
    paths = [
        root / "windows/sbousseaden_EVTX-ATTACK-SAMPLES/Execution",
        wide / "sbousseaden_EVTX-ATTACK-SAMPLES/Execution",
    ]
    out = tmp_path / "eval.json"
    proc = subprocess.run(
        [sys.executable, "-m", "unbacked.cli.main", "eval", *map(str, paths),
         "--labels", str(root / "labels"), "--labels", str(LABELS),
         "--data-root", str(root), "-q", "-o", str(out)],
        capture_output=True, text=True, cwd=REPO, check=False, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "per corpus" in proc.stdout
    rep = json.loads(out.read_text())
    names = [p.relative_to(root).as_posix() for p in paths]
    assert list(rep["corpora"]) == names
    n_files = {n: sum(1 for p in (root / n).glob("*.evtx")) for n in names}
    assert {n: r["files"] for n, r in rep["corpora"].items()} == n_files
    assert all(f["corpus"] in names for f in rep["files"])
