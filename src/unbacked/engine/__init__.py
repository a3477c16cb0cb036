"""Engines: the embedded local pipeline (default) and, with the ``[spark]`` extra, Spark."""

from unbacked.detect import learn_baseline
from unbacked.engine.local import HuntResult, detect_events, hunt, train

__all__ = ["HuntResult", "detect_events", "hunt", "learn_baseline", "train"]
