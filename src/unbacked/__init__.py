"""unbacked: catch reflective code loading by learning each program's executable-memory behaviour."""

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
from unbacked.model.schema import EVENT_SCHEMA, EVENT_SCHEMA_VERSION

__version__ = "0.1.0"

__all__ = [
    "EVENT_SCHEMA",
    "EVENT_SCHEMA_VERSION",
    "BaselineError",
    "DependencyError",
    "FormatError",
    "InputError",
    "ScanError",
    "SensorError",
    "UnbackedError",
    "UnknownFormatError",
    "__version__",
]
