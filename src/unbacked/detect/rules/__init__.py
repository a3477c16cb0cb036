"""Indicators: one module per family, each rule a class registered in ``DETECTORS``.

Every module of this package is imported on first use of the registry, so adding a rule is
adding a file (another package adds one through an ``unbacked.detectors`` entry point).
"""

from __future__ import annotations

from unbacked.detect.base import RULES, Rule


def load_rules() -> dict[str, type[Rule]]:
    """The registered rules by id (the detectors that are rules; imports them on first use)."""
    return {rid: cls for rid, cls in RULES.items() if issubclass(cls, Rule)}


__all__ = ["RULES", "load_rules"]
