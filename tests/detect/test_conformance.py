"""Every registered detector (the rules and the baseline detector) passes the conformance
kit (``unbacked.testing.yield_detector_checks``); the rules with their true- and
false-positive fixtures."""

from __future__ import annotations

import pytest

from tests.detect.rule_fixtures import FIXTURES
from unbacked.detect import DETECTORS
from unbacked.testing import Check, yield_detector_checks


def _checks() -> list[Check]:
    out = []
    for did in sorted(DETECTORS):
        fx = FIXTURES.get(did, {})
        pos = [fx["tp"]] if "tp" in fx else []
        neg = [fx["fp"]] if "fp" in fx else []
        out += yield_detector_checks(DETECTORS[did], positives=pos, negatives=neg)
    return out


@pytest.mark.parametrize("check", _checks(), ids=str)
def test_detector_conformance(check: Check) -> None:
    check()


def test_the_baseline_is_a_registered_detector() -> None:
    from unbacked.detect import RULES, BaselineDetector, load_rules

    assert DETECTORS["UNB-B-001"] is BaselineDetector
    assert "UNB-B-001" not in RULES and "UNB-B-001" not in load_rules()
    assert set(load_rules()) == set(DETECTORS) - {"UNB-B-001"}
