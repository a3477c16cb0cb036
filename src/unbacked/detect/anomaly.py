"""Baseline signals: facts surprising for their program become explained signals."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from unbacked.detect.base import DetectionContext, Detector, empty_signals, register_detector
from unbacked.detect.baseline import surprise_to_score
from unbacked.detect.features import EXPLAINED_TRACE_CLASSES, FEATURE_WEIGHT
from unbacked.model.rows import from_numpy

DETECTOR_ID = "UNB-B-001"
TITLE = "Executable-memory behaviour unusual for this program"
TECHNIQUES = ("T1620",)


@register_detector
class BaselineDetector(Detector):
    """The learned detector: facts rare for their program, scored against its baseline."""

    id = DETECTOR_ID
    title = TITLE
    description = (
        "A fact about the process (feature and value) is rare among the instances of its "
        "program (or of the population, for a program seen once)."
    )
    severity = 3
    attack = TECHNIQUES

    def evaluate(self, ctx: DetectionContext) -> pa.Table:
        """No baseline in ``ctx``: no signals (``hunt`` self-learns one from the data)."""
        return baseline_signals(ctx)


def baseline_signals(ctx: DetectionContext) -> pa.Table:
    """Score every fact against the baseline; keep those above their (calibrated) threshold."""
    if ctx.baseline is None:
        return empty_signals()
    if ctx.instance_facts.num_rows == 0:
        return empty_signals()
    scored = ctx.scored
    scored = scored.filter(pc.is_in(scored["feature"], pa.array(list(FEATURE_WEIGHT))))
    hits = ctx.baseline.surprising(scored)
    # a call-trace class that explains its unbacked frames (JIT code, kernel frames, a host
    # calling its own code) is no evidence of foreign code, however rare among the peers:
    # "ctfmon.exe: 0 of 3 peers showed kernel frames" says nothing about injection
    explained = pc.and_(
        pc.equal(hits["feature"], "open.unbacked"),
        pc.is_in(hits["value"], pa.array(EXPLAINED_TRACE_CLASSES)),
    )
    hits = hits.filter(pc.invert(explained))
    if hits.num_rows == 0:
        return empty_signals()
    # ctx.scored is per instance and value (its first event): one signal each already
    coded = pc.dictionary_encode(hits["feature"]).combine_chunks()
    weights = np.array([FEATURE_WEIGHT.get(f, 0.0) for f in coded.dictionary.to_pylist()])
    score = surprise_to_score(
        hits["surprise"].to_numpy(),
        hits["threshold"].to_numpy(),
        weights[coded.indices.to_numpy(zero_copy_only=False)],
    )
    ev = ctx.events.take(hits["row"])
    k = hits["k"]
    n = hits["n"]
    program = pc.fill_null(hits["program"], "?")
    events_part = pc.if_else(
        pc.greater(hits["program_feature_events"], 0),
        pc.binary_join_element_wise(
            " (",
            pc.cast(hits["program_events"], pa.string()),
            " of ",
            pc.cast(hits["program_feature_events"], pa.string()),
            " events)",
            "",
        ),
        "",
    )
    peers = pc.binary_join_element_wise(
        program,
        ": ",
        pc.cast(k, pa.string()),
        " of ",
        pc.cast(n, pa.string()),
        " peer instances",
        events_part,
        " showed ",
        hits["feature"],
        " = ",
        hits["value"],
        "",
    )
    # a program seen once has no peers: say what the population says instead
    share = pc.cast(pc.round(pc.multiply(hits["q"], 100.0), 2), pa.string())
    alone = pc.binary_join_element_wise(
        program,
        ": no other instance to compare with; across all programs ",
        share,
        "% of instances showed ",
        hits["feature"],
        " = ",
        hits["value"],
        "",
    )
    msg = pc.if_else(pc.equal(n, 0), alone, peers)
    from unbacked.detect.base import SIGNAL_SCHEMA

    nrows = hits.num_rows
    table = pa.table(
        {
            "subject_uid": hits["process_uid"],
            "actor_uid": pa.nulls(nrows, pa.string()),
            "host": ev["host"].cast(pa.string()),
            "time": ev["time"],
            "detector": pa.array([DETECTOR_ID] * nrows, pa.string()),
            "title": pa.array([TITLE] * nrows, pa.string()),
            "score": from_numpy(score, pa.float64()),
            "severity_id": pa.array([3] * nrows, pa.int8()),
            "techniques": pa.array([list(TECHNIQUES)] * nrows, pa.list_(pa.string())),
            "feature": hits["feature"],
            "value": hits["value"],
            "baseline_count": k,
            "baseline_total": n,
            "baseline_scope": hits["scope"],
            "message": msg,
            "row": hits["row"],
            "src_file": ev["src_file"].cast(pa.string()),
            "src_record": ev["src_record"],
            "src_line": ev["src_line"],
        }
    )
    return table.cast(SIGNAL_SCHEMA)
