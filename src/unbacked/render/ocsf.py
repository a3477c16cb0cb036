"""OCSF 1.x Detection Finding JSON lines (the alert contract, DESIGN.md §6); the dict form
of one alert is ``render.ocsf_codec``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import orjson

from unbacked.errors import FormatError
from unbacked.model.alert import Alert
from unbacked.render.base import Renderer, register_renderer
from unbacked.render.ocsf_codec import alert_from_ocsf, alert_to_ocsf


def write_ocsf(alerts: Sequence[Alert], stream: IO[str]) -> None:
    for alert in alerts:
        stream.write(orjson.dumps(alert_to_ocsf(alert), option=orjson.OPT_SORT_KEYS).decode())
        stream.write("\n")


@register_renderer
class OcsfRenderer(Renderer):
    """OCSF 1.x Detection Finding JSON lines: the alert contract (read back by ``report``)."""

    name = "ocsf"
    description = "OCSF 1.x Detection Finding JSON lines (the alert contract)."
    suffix = ".jsonl"

    #: the codec (``render.ocsf_codec``): how ``Alert.to_ocsf``/``Alert.from_ocsf`` reach it
    encode = staticmethod(alert_to_ocsf)
    decode = staticmethod(alert_from_ocsf)

    def render(self, alerts: Sequence[Alert], stream: IO[str]) -> None:
        write_ocsf(alerts, stream)


def iter_alert_dicts(path: str | Path) -> Iterator[dict[str, Any]]:
    """Detection Findings of an alerts JSONL file; a bad line is a FormatError naming it."""
    with Path(path).open("rb") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                raise FormatError(
                    f"line {n} is not JSON ({exc})",
                    source=str(path),
                    offset=n,
                    hint="pass the alerts file written by `unbacked hunt -o FILE` (OCSF format)",
                ) from exc
            if not isinstance(obj, dict) or obj.get("class_uid") != 2004:
                raise FormatError(
                    f"line {n} is not an OCSF Detection Finding (class_uid 2004)",
                    source=str(path),
                    offset=n,
                    hint="write alerts with --format ocsf (the default) to read them back",
                )
            yield obj


def read_alerts(path: str | Path) -> list[Alert]:
    out = []
    for n, obj in enumerate(iter_alert_dicts(path), 1):
        try:
            out.append(alert_from_ocsf(obj))
        except (KeyError, TypeError, ValueError) as exc:
            raise FormatError(f"alert {n} is malformed: {exc}", source=str(path)) from exc
    return out
