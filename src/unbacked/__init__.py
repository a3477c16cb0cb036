"""unbacked: catch reflective code loading by learning each program's executable memory."""

from typing import Any

from unbacked.errors import (
    BaselineError,
    DependencyError,
    FormatError,
    InputError,
    ScanError,
    SensorError,
    UnbackedError,
    UnknownFormatError,
)

__version__ = "0.1.0"

_LAZY = {
    "EVENT_SCHEMA": ("unbacked.model.schema", "EVENT_SCHEMA"),
    "EVENT_SCHEMA_VERSION": ("unbacked.model.schema", "EVENT_SCHEMA_VERSION"),
    "hunt": ("unbacked.engine.local", "hunt"),
    "train": ("unbacked.engine.local", "train"),
    "detect_events": ("unbacked.engine.local", "detect_events"),
    "read_events": ("unbacked.sources", "read_events"),
    "ProgramBaseline": ("unbacked.detect.baseline", "ProgramBaseline"),
    "Alert": ("unbacked.model.alert", "Alert"),
    "RunReport": ("unbacked.runreport", "RunReport"),
}


def __getattr__(name: str) -> Any:  # PEP 562: pyarrow and the pipeline load on first use
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'unbacked' has no attribute {name!r}")


__all__ = [
    "EVENT_SCHEMA",
    "EVENT_SCHEMA_VERSION",
    "Alert",
    "BaselineError",
    "DependencyError",
    "FormatError",
    "InputError",
    "ProgramBaseline",
    "RunReport",
    "ScanError",
    "SensorError",
    "UnbackedError",
    "UnknownFormatError",
    "__version__",
    "detect_events",
    "hunt",
    "read_events",
    "train",
]
