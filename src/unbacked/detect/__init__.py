"""Detection: features -> indicators (rules) + baselines (learned per program) -> signals."""

from __future__ import annotations

from collections.abc import Iterable

import pyarrow as pa

from unbacked.detect.anomaly import BaselineDetector, baseline_signals
from unbacked.detect.base import (
    DETECTORS,
    RULES,
    SIGNAL_SCHEMA,
    DetectionContext,
    Detector,
    Rule,
    empty_signals,
    register_detector,
    register_rule,
)
from unbacked.detect.baseline import ProgramBaseline
from unbacked.detect.features import extract_facts
from unbacked.detect.rules import load_rules


def run_rules(ctx: DetectionContext, rule_ids: Iterable[str] | None = None) -> pa.Table:
    """Evaluate every registered detector, in id order: the rules (or those named in
    ``rule_ids``) and the detectors that are not rules (the baseline), which always run; one
    signal table."""
    wanted = set(rule_ids) if rule_ids is not None else None
    tables = [
        cls().evaluate(ctx)
        for did, cls in sorted(DETECTORS.items())
        if wanted is None or did in wanted or not issubclass(cls, Rule)
    ]
    tables = [t for t in tables if t.num_rows]
    if not tables:
        return empty_signals()
    return sort_signals(pa.concat_tables(tables))


def learn_baseline(events: pa.Table, *, calibrate: bool = True, **hyper: float) -> ProgramBaseline:
    """Learn the per-program baseline of ``events`` (what ``train`` and a self-baselined hunt
    learn, and what each partition of a partitioned or Spark run learns before summing)."""
    ctx = DetectionContext.build(events)
    return ProgramBaseline(**hyper).learn(ctx.instance_facts, calibrate=calibrate)  # type: ignore[arg-type]


#: a total order of signals: which of two equal-scored signals explains an incident must not
#: depend on the order rules, threads or host groups produced them
SIGNAL_ORDER = ("subject_uid", "time", "row", "detector", "feature", "value")


def sort_signals(signals: pa.Table) -> pa.Table:
    return signals.sort_by([(k, "ascending") for k in SIGNAL_ORDER])


__all__ = [
    "DETECTORS",
    "RULES",
    "SIGNAL_SCHEMA",
    "BaselineDetector",
    "DetectionContext",
    "Detector",
    "ProgramBaseline",
    "Rule",
    "baseline_signals",
    "empty_signals",
    "extract_facts",
    "learn_baseline",
    "load_rules",
    "register_detector",
    "register_rule",
    "run_rules",
    "sort_signals",
]
