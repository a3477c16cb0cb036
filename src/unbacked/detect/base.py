"""Detection contracts: rules (indicators) and signals.

A **rule** is a high-confidence indicator with its metadata as class attributes (pySigma's rule
model, Elastic detection-rules metadata): ``id``, ``title``, ``severity``, ``attack``,
``references``, the event kinds and columns it needs. ``evaluate`` takes the run's
``DetectionContext`` and returns a table of ``SIGNAL_SCHEMA`` rows, vectorized over the events.
Every rule ships with a true-positive and a false-positive test (``tests/detect``).

A **signal** is one piece of evidence about one process instance (the *subject*: the process in
which foreign code ran), optionally naming an *actor* (the injector). ``correlate`` merges the
signals of a subject into one incident. Scores are 0-100 and are combined per subject by
noisy-OR, so independent evidence adds up while one weak signal stays weak.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from unbacked import duck
from unbacked.model.alert import rule_doc
from unbacked.model.rows import from_numpy, per_value
from unbacked.model.schema import EVENT_SCHEMA
from unbacked.model.state import program_column
from unbacked.plugins import PluginError, Registry, RegistryView

if TYPE_CHECKING:
    import duckdb

    from unbacked.detect.baseline import ProgramBaseline

SIGNAL_SCHEMA_VERSION = "1"

#: "normal for this program": at least this many peer instances ...
COMMON_MIN_PEERS = 3
#: ... of which at least this share show the same value; the indicator's score is then
#: multiplied by COMMON_FACTOR (evidence, but explained by what the program usually does)
COMMON_SHARE = 0.25
COMMON_FACTOR = 0.3

SIGNAL_SCHEMA = pa.schema(
    [
        pa.field("subject_uid", pa.string(), nullable=False),
        pa.field("actor_uid", pa.string()),
        pa.field("host", pa.string()),
        pa.field("time", pa.timestamp("ns", tz="UTC")),
        pa.field("detector", pa.string(), nullable=False),  # rule id or "baseline"
        pa.field("title", pa.string()),
        pa.field("score", pa.float64(), nullable=False),  # 0-100
        pa.field("severity_id", pa.int8()),
        pa.field("techniques", pa.list_(pa.string())),
        # explanation: the feature, the observed value, how often the baseline saw it
        pa.field("feature", pa.string()),
        pa.field("value", pa.string()),
        pa.field("baseline_count", pa.int64()),
        pa.field("baseline_total", pa.int64()),
        pa.field("baseline_scope", pa.string()),  # "program" | "population" | None
        pa.field("message", pa.string()),
        pa.field("row", pa.int64()),  # index of the event in the run's event table
        pa.field("src_file", pa.string()),
        pa.field("src_record", pa.int64()),
        pa.field("src_line", pa.int64()),
    ],
    metadata={"unbacked.schema": "signal", "unbacked.schema.version": SIGNAL_SCHEMA_VERSION},
)


def empty_signals() -> pa.Table:
    return SIGNAL_SCHEMA.empty_table()


def _max_per_key(table: pa.Table, cols: list[str]) -> pa.Table:
    """``table`` (``cols`` + ``k``, ``n``) with one row per key: the largest k and n."""
    out = table.group_by(cols, use_threads=False).aggregate([("k", "max"), ("n", "max")])
    return out.rename_columns([*cols, "k", "n"])


#: An events table up to this many rows is copied once into a TEMP table on a connection of
#: the context's own, which every rule's query then reads: binding a view over the ~70 Arrow
#: columns of the event schema costs ~5 ms a query, reading a small table ~1.5 ms (a small
#: hunt runs a dozen rule queries). A larger table is read in place through a view: copying
#: it would cost more than the binding it saves (at 10^6 events, 0.4 s for subsets of 60,000).
SMALL_QUERY_ROWS = 8_192


def _ev_columns(events: pa.Table) -> str:
    """The select list of view ``ev``: dictionary columns as VARCHAR (compared as strings)."""
    return ", ".join(
        f'"{c}"::VARCHAR AS "{c}"' if pa.types.is_dictionary(events.schema.field(c).type)
        else f'"{c}"'
        for c in events.column_names
    )  # fmt: skip


def arange(n: int) -> pa.Array:
    """0, 1, ..., n-1 as int64 (``model.rows.from_numpy``: no ``numpy.ma`` import)."""
    return from_numpy(np.arange(n, dtype=np.int64))


@dataclass(slots=True)
class DetectionContext:
    """What every rule can look at: the run's events (with ``row`` and ``program`` columns added)
    and the program baseline (learned, or self-learned from the same data)."""

    events: pa.Table
    baseline: ProgramBaseline | None = None
    #: True when the baseline was learned from the same data being scored (``hunt`` without
    #: ``--baseline``): peer statistics must then leave the scored instance itself out.
    self_baselined: bool = False
    cache: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        events: pa.Table,
        baseline: ProgramBaseline | None = None,
        *,
        self_baselined: bool = False,
    ) -> DetectionContext:
        if events.schema != EVENT_SCHEMA:
            from unbacked.model.schema import conform

            events = conform(events)
        events = events.append_column("row", arange(events.num_rows))
        from unbacked.model.identity import apply_identity

        events, program = apply_identity(events, program_column(events["image"]), baseline)
        events = events.append_column("program", program)
        events = events.append_column("target_program", program_column(events["target_image"]))
        return cls(events=events, baseline=baseline, self_baselined=self_baselined)

    @property
    def facts(self) -> pa.Table:
        """Feature facts of every event (``detect.features.extract_facts``), computed once.
        A rule that needs a few features' facts asks ``facts_of`` (the others are not
        computed then)."""
        if "facts" not in self.cache:
            from unbacked.detect.features import extract_facts

            self.cache["facts"] = extract_facts(self.events)
        return self.cache["facts"]

    def facts_of(self, *features: str, values: Collection[str] | None = None) -> pa.Table:
        """The facts of ``features`` only, and of those only the ones whose value is among
        ``values`` when given (rows in no particular order, as ``facts``'): from ``facts``
        when those are computed (or the run is small enough to compute them all), from
        ``row_facts`` when detectors declare the features (and, where they declare only some
        of a feature's values, ``values`` are among them), else computed for these features
        alone."""
        wanted = pa.array(sorted(set(features)), pa.string())
        if "facts" in self.cache or self.events.num_rows <= SMALL_QUERY_ROWS:
            facts = self.facts
        elif _in_row_facts(features, values):
            facts = self.row_facts
        else:
            key = "facts:" + "\x1f".join(wanted.to_pylist())
            if key not in self.cache:
                from unbacked.detect.features import extract_facts

                self.cache[key] = extract_facts(self.events, features)
            facts = self.cache[key]
        keep = pc.is_in(facts["feature"], wanted)
        if values is not None:
            chosen = pa.array(sorted(set(values)), pa.string())
            keep = pc.and_(keep, pc.is_in(facts["value"], chosen))
        return facts.filter(keep)

    @property
    def row_facts(self) -> pa.Table:
        """The facts, event by event, of the features detectors declare they read
        (``Detector.row_facts``): computed with ``instance_facts``, in the same pass."""
        if "row_facts" not in self.cache:
            declared = declared_row_features()
            if "facts" in self.cache or self.events.num_rows <= SMALL_QUERY_ROWS:
                self.cache["row_facts"] = self.facts_of(*declared)
            else:
                self.instance_facts  # noqa: B018 - computes both
            if "row_facts" not in self.cache:  # instance facts came from an earlier pass
                from unbacked.detect.features import extract_facts

                self.cache["row_facts"] = extract_facts(self.events, declared)
        return self.cache["row_facts"]

    @property
    def instance_facts(self) -> pa.Table:
        """``facts`` aggregated per (instance, feature, value), first row kept (what baselines
        learn from and score), computed once. A small run aggregates ``facts``; a larger one
        computes them in one DuckDB pass with ``row_facts``, and without the other facts
        (``extract_instance_facts``: several facts per event, mostly repeating strings)."""
        if "instance_facts" not in self.cache:
            if "facts" in self.cache or self.events.num_rows <= SMALL_QUERY_ROWS:
                from unbacked.detect.baseline import instance_facts

                self.cache["instance_facts"] = instance_facts(self.facts)
            else:
                from unbacked.detect.features import extract_instance_facts

                inst, rows = extract_instance_facts(
                    self.events, declared_row_features(), declared_row_values()
                )
                self.cache["instance_facts"] = inst
                self.cache.setdefault("row_facts", rows)
        return self.cache["instance_facts"]

    @property
    def scored(self) -> pa.Table:
        """Every fact scored against the baseline once (``ProgramBaseline.score``), shared by
        the baseline detector and the rules that weigh peers."""
        if "scored" not in self.cache:
            if self.baseline is None:
                raise ValueError("no baseline in this detection context")
            self.cache["scored"] = self.baseline.score(
                self.instance_facts, exclude_self=self.self_baselined
            )
        return self.cache["scored"]

    def peer_counts(self, facts: pa.Table) -> tuple[np.ndarray, np.ndarray]:
        """For each fact (``row``, ``process_uid``, ``program``, ``feature``, ``value``), in
        order: how many peer instances of its program showed the value (k) of those that could
        (n); the scored instance is left out when the baseline is self-learned."""
        n_rows = facts.num_rows
        zeros = np.zeros(n_rows, dtype=np.int64)
        if self.baseline is None or n_rows == 0:
            return zeros, zeros.copy()
        cols = ["process_uid", "feature", "value"]
        key = facts.select(cols).append_column("_i", arange(n_rows))
        known = self.scored.select([*cols, "k", "n"])
        # only the asked instances' scored facts take part: grouping and joining every
        # scored fact for a few asked about cost ~40 ms per context (the 77,000 of a
        # 250,000-event host group), the filter scans them once
        uids = pc.unique(key["process_uid"]).cast(pa.string())
        known = known.filter(pc.is_in(known["process_uid"], value_set=uids))
        # one row per key (an instance that exec'd another image has two programs)
        peer_max = _max_per_key(known, cols)
        # counts are per instance and value: any event of the instance finds them (a key is
        # missing from the scored facts exactly when it is missing from their maxima, as long
        # as no scored count is null)
        exact = known["k"].null_count == 0
        probe = key.join(peer_max if exact else known, cols, join_type="left outer")
        missing_idx = probe.filter(pc.is_null(probe["k"]))["_i"]
        if len(missing_idx):
            # facts a rule made up itself: score them directly (facts without a program, which
            # no baseline can speak for, get k = n = 0 through the outer join below)
            extra = facts.take(missing_idx)
            extra = extra.filter(pc.is_valid(extra["program"]))
            if extra.num_rows:
                scored = self.baseline.score(extra, exclude_self=self.self_baselined)
                extra_max = _max_per_key(scored.select([*cols, "k", "n"]), cols)
                # the maximum over both is the maximum of the two maxima
                peer_max = _max_per_key(pa.concat_tables([peer_max, extra_max]), cols)
        joined = key.join(peer_max, cols, join_type="left outer").sort_by("_i")
        k = pc.fill_null(joined["k"], 0).to_numpy(zero_copy_only=False)
        n = pc.fill_null(joined["n"], 0).to_numpy(zero_copy_only=False)
        return k.astype(np.int64), n.astype(np.int64)

    def discount_common(
        self,
        hit: pa.Table,
        feature: str,
        values: pa.Array | pa.ChunkedArray | list[str],
        score: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
        """Lower ``score`` where the program's peers commonly show ``feature = value``
        ("normal for this program": at least ``COMMON_MIN_PEERS`` peers, ``COMMON_SHARE`` of
        them). Returns the scores and the peer counts (k, n) for the explanation (None without
        a baseline)."""
        if self.baseline is None or hit.num_rows == 0:
            return score, None, None
        facts = pa.table(
            {
                "row": hit["row"],
                "process_uid": hit["process_uid"],
                "program": hit["program"],
                "feature": pa.array([feature] * hit.num_rows, pa.string()),
                "value": pa.array(values, pa.string())
                if isinstance(values, list)
                else values.cast(pa.string()),
            }
        )
        k, n = self.peer_counts(facts)
        common = (n >= COMMON_MIN_PEERS) & (k >= COMMON_SHARE * np.maximum(n, 1))
        return np.where(common, score * COMMON_FACTOR, score), k, n

    def query_rows(self, events: pa.Table, sql: str) -> pa.Table:
        """The events whose ``row`` ``sql`` selects. ``sql`` reads ``events`` as view ``ev``,
        its dictionary columns as VARCHAR (DuckDB compares them as plain strings then)."""
        rows = self.query(events, sql)
        return self.events.take(rows["row"]) if rows.num_rows else self.events.slice(0, 0)

    def query(self, events: pa.Table, sql: str) -> pa.Table:
        """The result of ``sql`` over ``events`` (view ``ev``, dictionary columns as VARCHAR),
        as it is: for a rule that wants computed columns beside the rows it selects."""
        if events.num_rows == 0:
            return pa.table({"row": pa.array([], pa.int64())})
        return duck.sql(self._connection(events), sql)

    def _connection(self, events: pa.Table) -> duckdb.DuckDBPyConnection:
        """The context's connection holding ``events`` as ``ev`` (made on first use, one per
        events table, shared by every rule's query; closed with the context: ``close``): a
        TEMP table up to ``SMALL_QUERY_ROWS`` events (copied once, then each query reads it
        directly), above it a view over the Arrow table (registered once, not copied)."""
        held: list[tuple[pa.Table, duckdb.DuckDBPyConnection]] = self.cache.setdefault(
            "connections", []
        )
        for table, con in held:
            if table is events:
                return con
        con = duck.connect()
        try:
            con.register("ev_raw", events)
            if events.num_rows <= SMALL_QUERY_ROWS:
                con.execute(f"CREATE TEMP TABLE ev AS SELECT {_ev_columns(events)} FROM ev_raw")
                con.unregister("ev_raw")
            else:
                con.execute(f"CREATE TEMP VIEW ev AS SELECT {_ev_columns(events)} FROM ev_raw")
        except BaseException:
            con.close()
            raise
        held.append((events, con))
        return con

    def close(self) -> None:
        """Close the connections ``query`` kept (a context is done when its signals are)."""
        for _, con in self.cache.pop("connections", []):
            con.close()

    def has(self, kind: str, activity: str | None = None) -> bool:
        """Whether any event is of ``kind`` (and ``activity``): a rule skips its query without
        them (the distinct pairs are found once per context)."""
        if "kind_pairs" not in self.cache:
            from unbacked.detect.features import kind_pairs

            self.cache["kind_pairs"] = kind_pairs(self.events)
        return any(k == kind and activity in (None, a) for k, a in self.cache["kind_pairs"])

    def select(
        self, *, kind: str | None = None, activity: Sequence[str] | str | None = None
    ) -> pa.Table:
        """Events of one kind and/or activities (a filtered view, cached)."""
        key = f"select:{kind}:{activity}"
        if key not in self.cache:
            ev = self.events
            mask = None
            if kind is not None:
                mask = column_in(ev["kind"], [kind])
            if activity is not None:
                acts = [activity] if isinstance(activity, str) else list(activity)
                m2 = column_in(ev["activity"], acts)
                mask = m2 if mask is None else pc.and_(mask, m2)
            self.cache[key] = ev if mask is None else ev.filter(mask)
        return self.cache[key]

    def columns(self, names: list[str]) -> pa.Table:
        """The events' columns ``names``, one table per list of names: a rule's queries over
        it share its connection and view with every other rule's asking for the same
        (``query`` keys them by table)."""
        key = "columns:" + "\x1f".join(names)
        if key not in self.cache:
            self.cache[key] = self.events.select(names)
        table: pa.Table = self.cache[key]
        return table


def column_in(column: pa.ChunkedArray, values: list[str]) -> pa.ChunkedArray:
    """Per row: whether a string or dictionary column holds one of ``values`` (false for a
    null; a dictionary chunk is tested on its entries)."""
    wanted = pa.array(values, pa.string())
    return per_value(column, lambda v: pc.is_in(v.cast(pa.string()), value_set=wanted))


def declared_row_features() -> frozenset[str]:
    """The features whose facts, event by event, registered detectors read
    (``Detector.row_facts``): computed with the instance facts, in one pass."""
    return frozenset(f for cls in DETECTORS.values() for f in getattr(cls, "row_facts", ()))


def declared_row_values() -> dict[str, frozenset[str]]:
    """Of the declared row features, those every declaring detector reads only some values
    of (``Detector.row_fact_values``), with the values any of them reads: the one pass leaves
    the other values' events out (a fleet's opens are mostly of the benign trace class)."""
    narrowed: dict[str, frozenset[str]] = {}
    whole: set[str] = set()
    for cls in DETECTORS.values():
        values = getattr(cls, "row_fact_values", {})
        for feature in getattr(cls, "row_facts", ()):
            if feature in values:
                narrowed[feature] = narrowed.get(feature, frozenset()) | set(values[feature])
            else:
                whole.add(feature)
    return {f: v for f, v in narrowed.items() if f not in whole}


def _in_row_facts(features: Collection[str], values: Collection[str] | None) -> bool:
    """Whether the declared row facts hold every fact of ``features`` (with a value among
    ``values`` when given)."""
    if not set(features) <= declared_row_features():
        return False
    narrowed = declared_row_values()
    return all(
        f not in narrowed or (values is not None and set(values) <= narrowed[f]) for f in features
    )


class Detector(ABC):
    """Turns the run's events into signals: a rule (``Rule``) or a learned detector (the
    baseline, ``detect.anomaly.BaselineDetector``). Registered in ``DETECTORS`` under ``id``.

    As river's and scikit-learn's estimators: ``__init__`` takes no data (the registry
    instantiates a detector with no arguments), ``evaluate`` never learns (what a detector
    learned comes in with ``ctx.baseline``), and it returns ``SIGNAL_SCHEMA`` rows.
    """

    id: ClassVar[str]
    title: ClassVar[str]
    description: ClassVar[str]
    severity: ClassVar[int]  # OCSF severity_id 1-5 of a signal of this detector
    attack: ClassVar[tuple[str, ...]]  # ATT&CK technique ids
    references: ClassVar[tuple[str, ...]] = ()
    os: ClassVar[tuple[str, ...]] = ("windows", "linux")
    #: features whose facts, event by event, ``evaluate`` reads through ``ctx.facts_of``
    #: (declared, they come with the instance facts in one pass; undeclared, a query of their own)
    row_facts: ClassVar[tuple[str, ...]] = ()
    #: of those features, the only values ``evaluate`` reads (``ctx.facts_of(f, values=...)``),
    #: where it reads a few only: the one pass then lists those events alone
    row_fact_values: ClassVar[Mapping[str, tuple[str, ...]]] = {}

    @abstractmethod
    def evaluate(self, ctx: DetectionContext) -> pa.Table:
        """Return ``SIGNAL_SCHEMA`` rows for the events that match (vectorized)."""

    @classmethod
    def doc(cls) -> str:
        """The detector's section of ``docs/rules.md`` (derived from the id: ``UNB-W-001`` ->
        ``docs/rules.md#unb-w-001``): what it means, known false positives, what to check."""
        return rule_doc(cls.id)


class Rule(Detector):
    """A high-confidence indicator. Subclasses set the class attributes and ``evaluate``."""

    score: ClassVar[float]  # base score 0-100 of one signal
    kinds: ClassVar[tuple[str, ...]]  # event kinds it reads
    requires: ClassVar[tuple[str, ...]]  # columns it needs non-null on the events it reads

    # -- helpers for subclasses ------------------------------------------------------------
    def signals(
        self,
        events: pa.Table,
        *,
        subject: pa.ChunkedArray | pa.Array,
        actor: pa.ChunkedArray | pa.Array | None = None,
        score: float | pa.Array | np.ndarray | None = None,
        feature: str | None = None,
        value: pa.ChunkedArray | pa.Array | None = None,
        message: pa.ChunkedArray | pa.Array | str | None = None,
        techniques: Sequence[str] | None = None,
        baseline_count: pa.Array | np.ndarray | None = None,
        baseline_total: pa.Array | np.ndarray | None = None,
        baseline_scope: str | None = None,
    ) -> pa.Table:
        """Build signal rows for ``events`` (one per row) with this rule's metadata."""
        n = events.num_rows
        if n == 0:
            return empty_signals()
        scores = np.full(n, self.score, dtype=np.float64) if score is None else score
        techs = list(techniques if techniques is not None else self.attack)
        if isinstance(message, str):
            message = pa.array([message] * n, pa.string())
        cols = {
            "subject_uid": subject,
            "actor_uid": actor if actor is not None else pa.nulls(n, pa.string()),
            "host": events["host"].cast(pa.string()),
            "time": events["time"],
            "detector": pa.array([self.id] * n, pa.string()),
            "title": pa.array([self.title] * n, pa.string()),
            "score": _cast(scores, pa.float64()),
            "severity_id": pa.array([self.severity] * n, pa.int8()),
            "techniques": pa.array([techs] * n, pa.list_(pa.string())),
            "feature": pa.array([feature] * n, pa.string()),
            "value": value if value is not None else pa.nulls(n, pa.string()),
            "baseline_count": baseline_count
            if baseline_count is not None
            else pa.nulls(n, pa.int64()),
            "baseline_total": baseline_total
            if baseline_total is not None
            else pa.nulls(n, pa.int64()),
            "baseline_scope": pa.array([baseline_scope] * n, pa.string()),
            "message": message if message is not None else pa.array([self.title] * n, pa.string()),
            "row": events["row"],
            "src_file": events["src_file"].cast(pa.string()),
            "src_record": events["src_record"],
            "src_line": events["src_line"],
        }
        table = pa.table({f.name: _cast(cols[f.name], f.type) for f in SIGNAL_SCHEMA})
        table = table.cast(SIGNAL_SCHEMA)
        return table.filter(pc.is_valid(table["subject_uid"]))

    @classmethod
    def metadata(cls) -> dict[str, Any]:
        return {
            "id": cls.id,
            "doc": cls.doc(),
            "title": cls.title,
            "description": cls.description,
            "severity": cls.severity,
            "score": cls.score,
            "attack": list(cls.attack),
            "references": list(cls.references),
            "kinds": list(cls.kinds),
            "requires": list(cls.requires),
            "os": list(cls.os),
        }


def _cast(values: Any, typ: pa.DataType) -> pa.Array | pa.ChunkedArray:
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values if values.type == typ else values.cast(typ)
    if isinstance(values, np.ndarray) and values.dtype.kind in "biuf":
        return from_numpy(values, typ)
    return pa.array(values, typ)


def _builtin_modules() -> list[str]:
    """The rule modules of ``detect/rules/`` (found beside this file) and the baseline's."""
    import pkgutil
    from pathlib import Path

    found = pkgutil.iter_modules([str(Path(__file__).parent / "rules")])
    mods = sorted(m.name for m in found if not m.name.startswith("_"))
    return [f"unbacked.detect.rules.{m}" for m in mods] + ["unbacked.detect.anomaly"]


#: every detector by id: the rules of ``unbacked.detect.rules``, the baseline detector and the
#: ``unbacked.detectors`` entry points of installed packages (imported on first use)
DETECTORS: Registry[type[Detector]] = Registry(
    "detectors",
    group="unbacked.detectors",
    base=Detector,
    modules=_builtin_modules,
    key=lambda cls: cls.id,
    summary=lambda cls: cls.title,
)

#: the detectors that are rules (a view of ``DETECTORS``)
RULES: RegistryView[type[Detector]] = DETECTORS.view(lambda cls: issubclass(cls, Rule))


def register_detector(cls: type[Detector]) -> type[Detector]:
    """Class decorator adding a detector to ``DETECTORS`` (a duplicate id is an error)."""
    return DETECTORS.register(cls)


def register_rule(cls: type[Rule]) -> type[Rule]:
    """Class decorator adding a rule to ``DETECTORS`` (a duplicate id is an error)."""
    if not (isinstance(cls, type) and issubclass(cls, Rule)):
        raise PluginError(f"{cls!r} is not a Rule")
    DETECTORS.register(cls)
    return cls
