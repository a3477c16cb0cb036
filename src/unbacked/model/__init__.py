"""Event model: versioned Arrow schemas and the per-process state tracker."""

from unbacked.model.schema import (
    EVENT_SCHEMA,
    EVENT_SCHEMA_VERSION,
    Activity,
    Kind,
    conform,
    empty_events,
)

__all__ = [
    "EVENT_SCHEMA",
    "EVENT_SCHEMA_VERSION",
    "Activity",
    "Kind",
    "conform",
    "empty_events",
]
