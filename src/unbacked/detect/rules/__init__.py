"""Indicators: one module per family, each rule a class registered in ``RULES``.

Every module of this package is imported on first use, so adding a rule is adding a file.
"""

from __future__ import annotations

import importlib
import pkgutil

from unbacked.detect.base import RULES, Rule


def load_rules() -> dict[str, type[Rule]]:
    """Import every rule module of this package and return the registry."""
    for mod in pkgutil.iter_modules(__path__):
        if not mod.name.startswith("_"):
            importlib.import_module(f"{__name__}.{mod.name}")
    return RULES


__all__ = ["RULES", "load_rules"]
