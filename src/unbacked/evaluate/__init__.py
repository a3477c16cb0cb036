"""Measuring detection against labelled data (``unbacked eval``)."""

from unbacked.evaluate.labels import Instance, LabelFile, load_label, load_labels
from unbacked.evaluate.metrics import EvalResult, FileResult, evaluate, markdown

__all__ = [
    "EvalResult",
    "FileResult",
    "Instance",
    "LabelFile",
    "evaluate",
    "load_label",
    "load_labels",
    "markdown",
]
