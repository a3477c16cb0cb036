"""The Linux live sensor: eBPF (CO-RE) telemetry of every act that procures executable memory.

``Sensor`` loads and attaches the eBPF programs and hands out raw records; ``EventDecoder``
turns them into ``EVENT_SCHEMA`` tables; ``record_command`` / ``record_system`` run the whole
pipeline (ring buffer → bounded spool → decoder → event file and/or streaming detection).
See docs/sensor.md.
"""

from __future__ import annotations

from unbacked.sensor.build import build_object
from unbacked.sensor.decode import EventDecoder
from unbacked.sensor.live import Sensor, SensorOptions, check_environment
from unbacked.sensor.record import RecordResult, record_command, record_system
from unbacked.sensor.spool import Spool
from unbacked.sensor.stream import StreamingDetector

__all__ = [
    "EventDecoder",
    "RecordResult",
    "Sensor",
    "SensorOptions",
    "Spool",
    "StreamingDetector",
    "build_object",
    "check_environment",
    "record_command",
    "record_system",
]
