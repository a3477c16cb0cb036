"""The synthetic fleet generator: fitted from the real captures, labelled exactly, EVENT_SCHEMA.

Small fleets only (CI budget); the scaling numbers come from bench/bench_scale.py."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

from unbacked.evaluate import evaluate, load_labels
from unbacked.evaluate.synth import SYNTH_FORMAT, Corpus, FleetModel, fit, generate
from unbacked.model.schema import EVENT_SCHEMA
from unbacked.sources import read_events

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def model() -> FleetModel:
    own = Corpus(
        (str(REPO / "samples" / "linux"), str(REPO / "tests" / "fixtures" / "windows")),
        str(REPO / "samples" / "labels"),
        str(REPO),
        attacks=True,
    )
    return fit([own])


@pytest.fixture(scope="module")
def fleet(model, tmp_path_factory):
    out = tmp_path_factory.mktemp("fleet")
    res = generate(model, out, events=20_000, hosts=4, days=2, attack_rate=0.01, seed=7)
    return out, res


def test_fit_keeps_labelled_attacks_out_of_the_benign_pool(model):
    labels = load_labels(REPO / "samples" / "labels")
    bad = {i.guid for lab in labels.values() for i in lab.malicious}
    pool_uids = {u.lower() for u in model.pool.column("process_uid").unique().to_pylist() if u}
    assert not (bad & pool_uids)
    # one attack shape per labelled control instance of the own corpora
    assert len(model.attacks) == sum(len(lab.malicious) for lab in labels.values())
    assert {a.os for a in model.attacks} == {"linux", "windows"}
    assert set(model.program_os) == {"linux", "windows"}


def test_fleet_schema_size_and_provenance(fleet):
    out, res = fleet
    assert 0.9 * 20_000 <= res.events <= 1.25 * 20_000
    table = read_events([out / "data"])
    assert table.num_rows == res.events
    assert table.schema.equals(EVENT_SCHEMA, check_metadata=False)
    for f in res.files:
        assert pq.read_schema(f).metadata[b"unbacked.schema"] == b"event"
        t = pq.read_table(f, columns=["time"]).column("time").to_numpy()
        assert np.all(np.diff(t.astype("int64")) >= 0)
    assert set(table.column("src_format").unique().to_pylist()) == {SYNTH_FORMAT}
    assert len(table.column("host").unique()) == 4


def test_labels_name_exactly_the_attacked_instances(model, fleet):
    out, res = fleet
    labels = load_labels(out / "labels")
    assert set(labels) == {p.relative_to(out).as_posix() for p in res.files}
    mal = [i for lab in labels.values() for i in lab.malicious]
    assert len(mal) == res.attacks == max(1, round(0.01 * res.instances))
    table = read_events([out / "data"])
    uid = table.column("process_uid")
    for inst in mal:
        rows = table.filter(pc.equal(pc.utf8_lower(uid), inst.guid))
        assert rows.num_rows > 0
        # the replayed shape is inside: some row of the instance has a shape's event code
        codes = set(rows.column("event_code").cast("string").to_pylist())
        shape_codes = set(model.attack_pool.column("event_code").cast("string").to_pylist())
        assert codes & shape_codes
    for lab in labels.values():
        assert lab.process_instances >= len(lab.malicious)


def test_benign_rows_follow_the_fitted_program_distributions(model, fleet):
    """Every synthetic benign row of a program is a row its real instances had: the pair
    (kind, activity) and the region size come from that program's real rows."""
    out, _ = fleet
    labels = load_labels(out / "labels")
    bad = {i.guid for lab in labels.values() for i in lab.malicious}
    table = read_events([out / "data"])
    keep = pc.invert(
        pc.is_in(
            pc.utf8_lower(table.column("process_uid")), pc.cast(list(bad), "string") if bad else []
        )
    )
    table = table.filter(keep)
    pool = model.pool

    def profile(t):
        prof = {}
        for img, kind, act, size in zip(
            t.column("image").to_pylist(),
            t.column("kind").cast("string").to_pylist(),
            t.column("activity").cast("string").to_pylist(),
            t.column("region_size").to_pylist(),
            strict=True,
        ):
            prof.setdefault(img, set()).add((kind, act, size))
        return prof

    real, synth = profile(pool), profile(table)
    for img, rows in synth.items():
        assert rows <= real[img], img
    # and the program mix is not degenerate: several programs per OS
    progs = Counter(table.column("os").cast("string").to_pylist())
    assert progs["linux"] > 0 and progs["windows"] > 0


def test_same_seed_same_fleet(model, tmp_path):
    a = generate(model, tmp_path / "a", events=5_000, hosts=2, seed=3)
    b = generate(model, tmp_path / "b", events=5_000, hosts=2, seed=3)
    ta = pq.read_table(a.files[0]).drop_columns(["src_file"])
    tb = pq.read_table(b.files[0]).drop_columns(["src_file"])
    assert ta.equals(tb)


def test_eval_arithmetic_on_the_fleet(fleet):
    """The fleet goes through hunt and eval like a real corpus; check the arithmetic only."""
    from unbacked.engine.local import hunt

    out, res = fleet
    labels = load_labels(out / "labels")
    result = hunt([out / "data"])
    ev = evaluate(list(result.alerts), labels, out)
    t = ev.totals
    assert t["malicious"] == res.attacks
    assert t["caught"] + sum(len(f.missed) for f in ev.files) == t["malicious"]
    assert t["unlabelled_alerts"] == 0
    assert t["false_alerts"] + t["caught"] <= len(result.alerts)
    assert t["false_per_10k_benign"] == round(10_000 * t["false_alerts"] / t["benign_instances"], 3)


def test_fit_refuses_labels_that_do_not_match_the_data(tmp_path):
    """A re-recorded capture with an old label would put its attack into the benign pool."""
    import json

    cap = "samples/linux/control-loader-wx.jsonl"
    label = {
        "file": cap,
        "scope": "attack",
        "process_instances": 1,
        "malicious_count": 1,
        "malicious": [
            {
                "role": "self-injected",
                "host": "vm",
                "process_guid": "vm:1:1",
                "pid": 1,
                "image": "/x/loader",
                "confidence": "confirmed",
                "disk_backed": False,
            }
        ],
    }
    (tmp_path / "l.json").write_text(json.dumps(label))
    corpus = Corpus((str(REPO / cap),), str(tmp_path), str(REPO), attacks=True)
    with pytest.raises(ValueError, match="label-samples"):
        fit([corpus])
