"""The alert contract (DESIGN.md §6): one OCSF 1.x Detection Finding per suspicious process.

Domain objects are frozen, slotted dataclasses. The OCSF form lives with the renderers
(``unbacked.render.ocsf_codec``): ``Alert.to_ocsf()`` renders the contract and
``Alert.from_ocsf()`` reads it back through the ``ocsf`` renderer, which the model asks the
registry for by name (the HTML report, ``eval`` and the memory scanner's findings all go through
the same shape). Times are timezone-aware UTC inside, epoch milliseconds outside.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

SEVERITY_NAMES = {
    0: "Unknown",
    1: "Informational",
    2: "Low",
    3: "Medium",
    4: "High",
    5: "Critical",
    6: "Fatal",
}
SEVERITY_BY_NAME = {v.lower(): k for k, v in SEVERITY_NAMES.items()}

#: ATT&CK technique names and tactics of the ids the project emits.
ATTACK = {
    "T1620": ("Reflective Code Loading", "TA0005", "Defense Evasion"),
    "T1055": ("Process Injection", "TA0005", "Defense Evasion"),
    "T1055.001": ("Dynamic-link Library Injection", "TA0005", "Defense Evasion"),
    "T1055.002": ("Portable Executable Injection", "TA0005", "Defense Evasion"),
    "T1055.003": ("Thread Execution Hijacking", "TA0005", "Defense Evasion"),
    "T1055.004": ("Asynchronous Procedure Call", "TA0005", "Defense Evasion"),
    "T1055.012": ("Process Hollowing", "TA0005", "Defense Evasion"),
    "T1059.001": ("PowerShell", "TA0002", "Execution"),
    "T1027": ("Obfuscated Files or Information", "TA0005", "Defense Evasion"),
    "T1027.011": ("Fileless Storage", "TA0005", "Defense Evasion"),
    "T1106": ("Native API", "TA0002", "Execution"),
    "T1071": ("Application Layer Protocol", "TA0011", "Command and Control"),
}


#: the page that explains every detector (rules, the baseline, correlation follow-ups, memscan):
#: one section per detector id, its anchor the id in lower case
RULE_DOCS = "docs/rules.md"


def rule_doc(detector: str) -> str:
    """The link to a detector's section of the rules page: ``UNB-W-001`` ->
    ``docs/rules.md#unb-w-001`` (what it means, known false positives, what to check next)."""
    return f"{RULE_DOCS}#{detector.strip().lower()}"


#: explanation lines an analyst is shown first (message, console table, HTML report); the rest
#: are behind a count ("+3 more"), never dropped from the OCSF explanation[]
EXPLAIN_SHOWN = 5


def rank_explanation(lines: Sequence[Explanation]) -> list[Explanation]:
    """Strongest reason first (score), ties in a fixed order (detector, feature, value)."""
    return sorted(lines, key=lambda e: (-e.score, e.detector, e.feature, e.value or ""))


def more_reasons(hidden: int) -> str:
    """The count that stands for the reasons not shown: "+3 more" ("" when none)."""
    return f"+{hidden} more" if hidden > 0 else ""


def severity_from_risk(risk: float) -> int:
    """OCSF severity_id for a 0-100 risk score."""
    if risk >= 90:
        return 5
    if risk >= 70:
        return 4
    if risk >= 40:
        return 3
    if risk >= 20:
        return 2
    return 1


def parse_severity(value: str | int) -> int:
    """``high``/``4``/``High`` -> 4 (``--fail-on``)."""
    if isinstance(value, int) or str(value).isdigit():
        sev = int(value)
        if sev in SEVERITY_NAMES:
            return sev
    else:
        sev_name = SEVERITY_BY_NAME.get(str(value).strip().lower())
        if sev_name is not None:
            return sev_name
    raise ValueError(
        f"unknown severity {value!r}: use one of "
        + ", ".join(n.lower() for k, n in SEVERITY_NAMES.items() if 1 <= k <= 5)
    )


def to_ms(ts: datetime | None) -> int | None:
    if ts is None:
        return None
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=UTC)
    return round(ts.timestamp() * 1000)


def from_ms(ms: int | None) -> datetime | None:
    return None if ms is None else datetime.fromtimestamp(ms / 1000, tz=UTC)


@dataclass(frozen=True, slots=True)
class ProcessRef:
    """A process as an alert shows it; ``parent`` chains as far as known."""

    uid: str | None
    pid: int | None = None
    name: str | None = None
    path: str | None = None
    cmd_line: str | None = None
    user: str | None = None
    created: datetime | None = None
    parent: ProcessRef | None = None

    def chain(self) -> list[ProcessRef]:
        """This process and its parents, nearest first."""
        out: list[ProcessRef] = []
        node: ProcessRef | None = self
        while node is not None and len(out) < 64:
            out.append(node)
            node = node.parent
        return out


@dataclass(frozen=True, slots=True)
class Provenance:
    file: str | None
    record: int | None = None
    line: int | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            k: v
            for k, v in (("file", self.file), ("record_id", self.record), ("line", self.line))
            if v is not None
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Provenance:
        d = d or {}
        return cls(file=d.get("file"), record=d.get("record_id"), line=d.get("line"))


@dataclass(frozen=True, slots=True)
class Explanation:
    """Why: one feature, its observed value, and how often the baseline saw it."""

    feature: str
    value: str | None
    detector: str
    score: float
    message: str
    baseline_count: int | None = None
    baseline_total: int | None = None
    baseline_scope: str | None = None

    @property
    def value_text(self) -> str | None:
        """The value in words (an access mask's rights, a call-trace class), when it has any."""
        from unbacked.model.words import value_words

        return value_words(self.feature, self.value)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "feature": self.feature,
            "value": self.value,
            "detector": self.detector,
            "score": round(self.score, 3),
            "message": self.message,
        }
        words = self.value_text
        if words:
            out["value_text"] = words
        if self.detector:
            out["doc"] = rule_doc(self.detector)
        if self.baseline_total is not None:
            out["baseline"] = {
                "count": self.baseline_count,
                "total": self.baseline_total,
                "scope": self.baseline_scope,
                "frequency": (
                    round(self.baseline_count / self.baseline_total, 6)
                    if self.baseline_total and self.baseline_count is not None
                    else 0.0
                ),
            }
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Explanation:
        b = d.get("baseline") or {}
        return cls(
            feature=d["feature"],
            value=d.get("value"),
            detector=d.get("detector", ""),
            score=float(d.get("score", 0.0)),
            message=d.get("message", ""),
            baseline_count=b.get("count"),
            baseline_total=b.get("total"),
            baseline_scope=b.get("scope"),
        )


@dataclass(frozen=True, slots=True)
class TimelineEntry:
    time: datetime | None
    kind: str  # allocate, protect, write, thread, open, connect, child, launch, load, ...
    summary: str
    provenance: Provenance
    signal: str | None = None  # detector id when this line is evidence

    def to_dict(self) -> dict[str, Any]:
        out = {
            "time": to_ms(self.time),
            "kind": self.kind,
            "summary": self.summary,
            "provenance": self.provenance.to_dict(),
        }
        if self.signal:
            out["signal"] = self.signal
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> TimelineEntry:
        return cls(
            time=from_ms(d.get("time")),
            kind=d.get("kind", ""),
            summary=d.get("summary", ""),
            provenance=Provenance.from_dict(d.get("provenance")),
            signal=d.get("signal"),
        )


@dataclass(frozen=True, slots=True)
class RegionInfo:
    base: int
    size: int | None
    protections: tuple[str, ...] = ()
    backing: str | None = None
    header_kind: str | None = None
    threads: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "base": f"0x{self.base:x}",
            "size": self.size,
            "protection_history": list(self.protections),
            "backing": self.backing,
            "header_kind": self.header_kind,
            "threads": self.threads,
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> RegionInfo:
        base = d.get("base") or 0
        return cls(
            base=int(base, 16) if isinstance(base, str) else int(base),
            size=d.get("size"),
            protections=tuple(d.get("protection_history") or ()),
            backing=d.get("backing"),
            header_kind=d.get("header_kind"),
            threads=int(d.get("threads") or 0),
        )


@dataclass(frozen=True, slots=True)
class NetworkContact:
    remote: str  # ip:port
    time: datetime | None
    remote_host: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out = {"remote": self.remote, "time": to_ms(self.time)}
        if self.remote_host:
            out["remote_host"] = self.remote_host
        return out

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> NetworkContact:
        return cls(
            remote=d["remote"], time=from_ms(d.get("time")), remote_host=d.get("remote_host")
        )


@dataclass(frozen=True, slots=True)
class Alert:
    """One incident: a process instance in which foreign code ran."""

    uid: str
    title: str
    message: str
    risk_score: int
    severity_id: int
    first_seen: datetime | None
    last_seen: datetime | None
    hostname: str | None
    process: ProcessRef
    actor: ProcessRef | None = None
    techniques: tuple[str, ...] = ()
    types: tuple[str, ...] = ()
    explanation: tuple[Explanation, ...] = ()
    timeline: tuple[TimelineEntry, ...] = ()
    regions: tuple[RegionInfo, ...] = ()
    network: tuple[NetworkContact, ...] = ()
    children: tuple[ProcessRef, ...] = ()
    verification: Mapping[str, Any] | None = None
    sources: tuple[Mapping[str, Any], ...] = ()
    detectors: tuple[str, ...] = ()
    extra: Mapping[str, Any] = field(default_factory=dict)

    @property
    def time(self) -> datetime | None:
        return self.last_seen or self.first_seen

    def top_reasons(self, n: int = EXPLAIN_SHOWN) -> tuple[list[Explanation], int]:
        """The ``n`` strongest explanation lines, ranked, and how many more there are."""
        ranked = rank_explanation(self.explanation)
        return ranked[: max(n, 0)], max(len(ranked) - max(n, 0), 0)

    def to_ocsf(self) -> dict[str, Any]:
        """This alert as an OCSF 1.x Detection Finding: the alert contract (DESIGN.md §6)."""
        out: dict[str, Any] = _ocsf_renderer().encode(self)
        return out

    @classmethod
    def from_ocsf(cls, d: Mapping[str, Any]) -> Alert:
        """Read an alert back from its OCSF form (``report``, ``eval``)."""
        out: Alert = _ocsf_renderer().decode(d)
        return out


def sort_alerts(alerts: Sequence[Alert]) -> list[Alert]:
    """Most severe first, then earliest."""
    return sorted(
        alerts,
        key=lambda a: (-a.risk_score, to_ms(a.first_seen) or 0, a.hostname or "", a.uid),
    )


class Alerts(list[Alert]):
    """A run's alerts, with tables for notebooks (``to_arrow``, ``to_pandas``, ``timeline``)."""

    #: rows shown by ``_repr_html_`` (the rest behind a count)
    HTML_ROWS = 20

    def _by_severity(self) -> str:
        counts = Counter(a.severity_id for a in self)
        return ", ".join(
            f"{n} {SEVERITY_NAMES.get(sev, 'Unknown').lower()}"
            for sev, n in sorted(counts.items(), reverse=True)
        )

    def __repr__(self) -> str:
        if not self:
            return "<Alerts: none>"
        top = max(self, key=lambda a: a.risk_score)
        return (
            f"<Alerts: {len(self)} ({self._by_severity()}); top: {top.process.name or '?'} "
            f"({top.process.pid}) risk {top.risk_score} {top.title!r}>"
        )

    def _repr_html_(self) -> str:
        from html import escape as h

        if not self:
            return "<p><b>no alerts</b></p>"
        rows = []
        for a in sorted(self, key=lambda a: -a.risk_score)[: self.HTML_ROWS]:
            actor = f"{a.actor.name} ({a.actor.pid})" if a.actor is not None else ""
            rows.append(
                f"<tr><td>{h(SEVERITY_NAMES.get(a.severity_id, '?'))}</td><td>{a.risk_score}</td>"
                f"<td>{h(a.hostname or '')}</td><td>{h(a.process.name or '?')} "
                f"({a.process.pid})</td><td>{h(actor)}</td><td>{h(a.title)}</td>"
                f"<td>{h(' '.join(a.techniques))}</td></tr>"
            )
        more = len(self) - self.HTML_ROWS
        tail = f"<p>… and {more} more (<code>alerts.to_pandas()</code>)</p>" if more > 0 else ""
        return (
            f"<p><b>{len(self)} alerts</b>: {h(self._by_severity())}</p><table><thead><tr>"
            "<th>severity</th><th>risk</th><th>host</th><th>process</th><th>injector</th>"
            "<th>title</th><th>ATT&amp;CK</th></tr></thead><tbody>"
            + "".join(rows)
            + "</tbody></table>"
            + tail
        )

    def by_uid(self, alert_id: str | int) -> Alert:
        if isinstance(alert_id, int):
            return self[alert_id]
        for a in self:
            if a.uid == alert_id or a.uid.startswith(str(alert_id)):
                return a
        raise KeyError(f"no alert {alert_id!r}")

    def to_arrow(self) -> pa.Table:
        import pyarrow as pa

        def ref(p: ProcessRef | None, attr: str) -> Any:
            return getattr(p, attr) if p is not None else None

        return pa.table(
            {
                "uid": [a.uid for a in self],
                "first_seen": pa.array([a.first_seen for a in self], pa.timestamp("ms", "UTC")),
                "last_seen": pa.array([a.last_seen for a in self], pa.timestamp("ms", "UTC")),
                "host": [a.hostname for a in self],
                "process": [a.process.name for a in self],
                "pid": pa.array([a.process.pid for a in self], pa.int64()),
                "process_uid": [a.process.uid for a in self],
                "actor": [ref(a.actor, "name") for a in self],
                "actor_pid": pa.array([ref(a.actor, "pid") for a in self], pa.int64()),
                "risk_score": pa.array([a.risk_score for a in self], pa.int32()),
                "severity": [SEVERITY_NAMES.get(a.severity_id, "Unknown") for a in self],
                "title": [a.title for a in self],
                "techniques": pa.array([list(a.techniques) for a in self], pa.list_(pa.string())),
                "detectors": pa.array([list(a.detectors) for a in self], pa.list_(pa.string())),
                "message": [a.message for a in self],
            }
        )

    def to_pandas(self) -> Any:  # -> pandas.DataFrame
        return self.to_arrow().to_pandas()

    def timeline(self, alert_id: str | int) -> Any:  # -> pandas.DataFrame
        """The alert's timeline as a DataFrame (time, kind, summary, signal, file, record)."""
        import pandas as pd

        a = self.by_uid(alert_id)
        return pd.DataFrame(
            [
                {
                    "time": t.time,
                    "kind": t.kind,
                    "summary": t.summary,
                    "signal": t.signal,
                    "file": t.provenance.file,
                    "record": t.provenance.record,
                    "line": t.provenance.line,
                }
                for t in a.timeline
            ],
            columns=["time", "kind", "summary", "signal", "file", "record", "line"],
        )

    def explanation(self, alert_id: str | int) -> Any:  # -> pandas.DataFrame
        import pandas as pd

        a = self.by_uid(alert_id)
        return pd.DataFrame([e.to_dict() for e in a.explanation])

    def plot(self, alert_id: str | int, *, height: int | None = None) -> Any:  # bokeh figure
        """The alert's timeline as a zoomable bokeh figure, the same plot the HTML report shows.

        Display it in a notebook with ``bokeh.io.output_notebook(); bokeh.io.show(fig)``. bokeh
        is imported here, not at module import, so alerts stay usable without the ``[report]``
        extra; without bokeh this raises :class:`~unbacked.errors.DependencyError`.
        """
        return _html_renderer().figure(self.by_uid(alert_id), height=height)

    def to_html(self, path: str | PathLike[str], *, title: str | None = None) -> Path:
        """Write the offline HTML report of these alerts (``unbacked report``) to ``path``."""
        out: Path = _html_renderer()(title=title).write(self, path)
        return out


def _renderer(name: str) -> Any:
    """The renderer plug-in ``name`` (the model asks the registry for it by name: renderers
    depend on the model, never the other way round)."""
    from unbacked.plugins import registry

    return registry("renderers").require(name)


def _html_renderer() -> Any:
    """The HTML report renderer (``Alerts.plot``, ``Alerts.to_html``)."""
    return _renderer("html")


def _ocsf_renderer() -> Any:
    """The OCSF renderer, whose codec (``encode``/``decode``) is the alert's OCSF form."""
    return _renderer("ocsf")
