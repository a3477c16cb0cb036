"""Measuring detection against labelled data (``unbacked eval``)."""

from unbacked.evaluate.labels import Instance, LabelFile, load_label, load_labels
from unbacked.evaluate.metrics import (
    EvalResult,
    FileResult,
    curve_markdown,
    evaluate,
    markdown,
    threshold_curve,
)

__all__ = [
    "EvalResult",
    "FileResult",
    "Instance",
    "LabelFile",
    "curve_markdown",
    "evaluate",
    "load_label",
    "load_labels",
    "markdown",
    "threshold_curve",
]
