"""Per-program baselines: what each program normally does with executable memory.

``ProgramBaseline`` follows the river / scikit-learn estimator contract: ``__init__`` stores
hyper-parameters only, ``learn`` sets the learned tables (names ending in ``_``), ``score`` never
learns, and thresholding (``surprising``) is separate from scoring.

Counting unit: **process instances**, not events. "3 of 812 powershell.exe instances ever called
OpenProcess from unbacked code" is robust to one chatty process emitting 10,000 events, and is
what an analyst can check. Event counts are kept too, for the explanation.

Score: the surprise, in bits, of a fact (program, feature, value) against the program's
instances, with back-off to the population for programs with few instances:

    P = (k + prior * q) / (n + prior),   surprise = -log2 P

where ``k`` instances of the program showed the value, ``n`` showed the feature at all, and ``q``
is the population's smoothed rate of the value. When the baseline was learned from the data being
scored (``exclude_self=True``, ``hunt`` without ``--baseline``), the scored instance is left out
of every count, so an attacker's process cannot make its own behaviour look normal.

Calibration: a learned baseline stores, per program and feature, the highest leave-one-out
surprise its own instances reached; a fact is surprising only above that (and above
``min_surprise``), so a program that is naturally diverse (a JIT host) needs more to alarm.

Persistence: a directory with ``manifest.json`` (format, version, hyper-parameters, table
files with row counts and SHA-256) and one Parquet file per table. No pickle: loading validates
format, version, schemas and hashes and raises ``BaselineError`` with what is wrong.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from unbacked import duck
from unbacked.detect.features import ABSENCE_AWARE
from unbacked.errors import BaselineError
from unbacked.sql import sql_str

BASELINE_FORMAT = "unbacked.baseline"
#: 2: the manifest carries a checksum over all its fields, every field is validated
BASELINE_VERSION = 2

TABLE_SCHEMAS: dict[str, pa.Schema] = {
    "counts": pa.schema(
        [
            ("program", pa.string()),
            ("feature", pa.string()),
            ("value", pa.string()),
            ("instances", pa.int64()),
            ("events", pa.int64()),
        ]
    ),
    "totals": pa.schema(
        [
            ("program", pa.string()),
            ("feature", pa.string()),
            ("instances", pa.int64()),
            ("events", pa.int64()),
        ]
    ),
    "population": pa.schema(
        [
            ("feature", pa.string()),
            ("value", pa.string()),
            ("instances", pa.int64()),
            ("events", pa.int64()),
            ("programs", pa.int64()),
        ]
    ),
    "population_totals": pa.schema(
        [("feature", pa.string()), ("instances", pa.int64()), ("events", pa.int64())]
    ),
    "thresholds": pa.schema(
        [("program", pa.string()), ("feature", pa.string()), ("threshold", pa.float64())]
    ),
}

SCORED_SCHEMA_EXTRA = [
    ("k", pa.int64()),
    ("n", pa.int64()),
    ("program_events", pa.int64()),
    ("program_feature_events", pa.int64()),
    ("q", pa.float64()),
    ("surprise", pa.float64()),
    ("threshold", pa.float64()),
    ("scope", pa.string()),
]


@dataclass
class ProgramBaseline:
    """Per-program feature baseline with population back-off (see module docs).

    Parameters
    ----------
    prior:
        Weight, in pseudo-instances, of the population rate in a program's estimate.
    min_surprise:
        Bits below which no fact is surprising, whatever the calibration.
    calibration_margin:
        Bits added to a program's highest leave-one-out training surprise.
    min_instances_for_calibration:
        A program needs this many instances for its own calibrated threshold.
    """

    prior: float = 2.0
    min_surprise: float = 5.0
    calibration_margin: float = 1.0
    min_instances_for_calibration: int = 5

    def __post_init__(self) -> None:
        self.counts_: pa.Table | None = None
        self.totals_: pa.Table | None = None
        self.population_: pa.Table | None = None
        self.population_totals_: pa.Table | None = None
        self.thresholds_: pa.Table | None = None
        self.meta_: dict[str, Any] = {}

    # -- learning --------------------------------------------------------------------------
    @property
    def is_fitted(self) -> bool:
        return self.counts_ is not None

    def learn(self, facts: pa.Table, *, calibrate: bool = True) -> ProgramBaseline:
        """Learn counts from a fact table (``extract_facts``)."""
        validate_hyper_parameters(self.hyper_parameters())
        with duck.session(facts=with_event_counts(facts)) as con:
            self.counts_ = duck.sql(
                con,
                """SELECT program, feature, value, count(DISTINCT process_uid) AS instances,
                          sum(events)::BIGINT AS events
                     FROM facts GROUP BY ALL ORDER BY ALL""",
            ).cast(TABLE_SCHEMAS["counts"])
            absent = ", ".join(f"({sql_str(f)}, {sql_str(d)})" for f, d in ABSENCE_AWARE.items())
            self.totals_ = duck.sql(
                con,
                f"""WITH a(feature, denominator) AS (VALUES {absent}),
                         seen AS (SELECT program, feature AS denominator,
                                         count(DISTINCT process_uid) AS instances
                                    FROM facts WHERE feature IN (SELECT denominator FROM a)
                                   GROUP BY ALL),
                         ev AS (SELECT program, feature, sum(events)::BIGINT AS events
                                  FROM facts GROUP BY ALL)
                    SELECT program, feature, count(DISTINCT process_uid) AS instances,
                           sum(events)::BIGINT AS events
                      FROM facts WHERE feature NOT IN (SELECT feature FROM a)
                     GROUP BY ALL
                    UNION ALL
                    SELECT s.program, a.feature, s.instances, coalesce(e.events, 0)
                      FROM a JOIN seen s USING (denominator)
                      LEFT JOIN ev e ON e.program = s.program AND e.feature = a.feature
                     ORDER BY ALL""",
            ).cast(TABLE_SCHEMAS["totals"])
            self.population_ = duck.sql(
                con,
                """SELECT feature, value, count(DISTINCT process_uid) AS instances,
                          sum(events)::BIGINT AS events, count(DISTINCT program) AS programs
                     FROM facts GROUP BY ALL ORDER BY ALL""",
            ).cast(TABLE_SCHEMAS["population"])
            self.population_totals_ = duck.sql(
                con,
                f"""WITH a(feature, denominator) AS (VALUES {absent}),
                         seen AS (SELECT feature AS denominator,
                                         count(DISTINCT process_uid) AS instances
                                    FROM facts WHERE feature IN (SELECT denominator FROM a)
                                   GROUP BY ALL),
                         ev AS (SELECT feature, sum(events)::BIGINT AS events
                                  FROM facts GROUP BY ALL)
                    SELECT feature, count(DISTINCT process_uid) AS instances,
                           sum(events)::BIGINT AS events
                      FROM facts WHERE feature NOT IN (SELECT feature FROM a)
                     GROUP BY ALL
                    UNION ALL
                    SELECT a.feature, s.instances, coalesce(e.events, 0)
                      FROM a JOIN seen s USING (denominator) LEFT JOIN ev e USING (feature)
                     ORDER BY ALL""",
            ).cast(TABLE_SCHEMAS["population_totals"])
        self.thresholds_ = TABLE_SCHEMAS["thresholds"].empty_table()
        if calibrate:
            scored = self.score(facts, exclude_self=True, calibrated=False)
            self.thresholds_ = duck.query(
                """SELECT program, feature,
                          max(surprise) + $margin::DOUBLE AS threshold
                     FROM s
                    WHERE n + 1 >= $min_instances::BIGINT
                    GROUP BY ALL ORDER BY ALL""",
                {
                    "margin": self.calibration_margin,
                    "min_instances": self.min_instances_for_calibration,
                },
                s=scored,
            ).cast(TABLE_SCHEMAS["thresholds"])
        self.meta_ = {
            "learned_at": datetime.now(UTC).isoformat(),
            "facts": facts.num_rows,
            "programs": len(set(self.totals_.column("program").to_pylist())),
        }
        return self

    # -- scoring ---------------------------------------------------------------------------
    def score(
        self, facts: pa.Table, *, exclude_self: bool = False, calibrated: bool = True
    ) -> pa.Table:
        """Facts with their surprise (bits) and the threshold that applies to them."""
        self._check_fitted()
        validate_hyper_parameters(self.hyper_parameters())
        learned = {
            name: getattr(self, name + "_")
            for name in ("counts", "totals", "population", "population_totals", "thresholds")
        }
        with duck.session(**learned, facts=with_event_counts(facts)) as con:
            self_n = "1" if exclude_self else "0"  # code constants, not values
            thr = "coalesce(th.threshold, 0)" if calibrated else "0"
            # the scored instance's own events, to leave them out: only a self-learned
            # baseline counted them (two aggregations and two joins on four strings, half of
            # this query's time, that a trained baseline does not need)
            own = own_feat = "0"
            own_ctes = own_joins = ""
            if exclude_self:
                own, own_feat = "i.own_events", "j.own_events"
                own_ctes = """WITH inst AS (   -- per scored instance: its own contribution
                SELECT process_uid, program, feature, value, sum(events)::BIGINT AS own_events
                  FROM facts GROUP BY ALL
            ), inst_feat AS (
                SELECT process_uid, program, feature, sum(events)::BIGINT AS own_events
                  FROM facts GROUP BY ALL
            )"""
                own_joins = """JOIN inst i USING (process_uid, program, feature, value)
              JOIN inst_feat j USING (process_uid, program, feature)"""
            query = f"""
            {own_ctes}
            SELECT f.*,
                   greatest(coalesce(c.instances, 0) - {self_n}, 0) AS k,
                   greatest(coalesce(t.instances, 0) - {self_n}, 0) AS n,
                   greatest(coalesce(c.events, 0) - {own}, 0) AS program_events,
                   greatest(coalesce(t.events, 0) - {own_feat}, 0) AS program_feature_events,
                   (greatest(coalesce(p.instances, 0) - {self_n}, 0) + 0.5)
                     / (greatest(coalesce(pt.instances, 0) - {self_n}, 0) + 1.0) AS q,
                   greatest({thr}, $min_surprise::DOUBLE) AS threshold
              FROM facts f
              {own_joins}
              LEFT JOIN counts c USING (program, feature, value)
              LEFT JOIN totals t USING (program, feature)
              LEFT JOIN population p USING (feature, value)
              LEFT JOIN population_totals pt USING (feature)
              LEFT JOIN thresholds th USING (program, feature)
            """
            scored = duck.sql(
                con,
                f"""SELECT *,
                      -log2((k + $prior::DOUBLE * q) / (n + $prior::DOUBLE)) AS surprise,
                      CASE WHEN n >= 3 THEN 'program' ELSE 'population' END AS scope
                    FROM ({query}) ORDER BY row, feature""",
                {"prior": self.prior, "min_surprise": self.min_surprise},
            )
        return scored

    def surprising(self, scored: pa.Table) -> pa.Table:
        """The scored facts above their threshold (thresholding is separate from scoring)."""
        import pyarrow.compute as pc

        return scored.filter(pc.greater(scored["surprise"], scored["threshold"]))

    # -- inspection ------------------------------------------------------------------------
    def profile(self, program: str) -> pa.Table:
        """What is normal for ``program``: each feature value with its instance and event counts
        and share of the program's instances."""
        self._check_fitted()
        assert self.counts_ is not None and self.totals_ is not None
        return duck.query(
            """SELECT c.feature, c.value, c.instances, t.instances AS of_instances,
                      c.events, round(c.instances / t.instances, 4) AS share
                 FROM counts c JOIN totals t USING (program, feature)
                WHERE c.program IN (SELECT program FROM wanted)
                ORDER BY c.feature, c.instances DESC, c.value""",
            counts=self.counts_,
            totals=self.totals_,
            wanted=pa.table({"program": [program.lower()]}),
        )

    def programs(self) -> list[str]:
        self._check_fitted()
        assert self.totals_ is not None
        return sorted(set(self.totals_.column("program").to_pylist()))

    def _check_fitted(self) -> None:
        if not self.is_fitted:
            raise BaselineError("baseline is not learned yet", hint="call learn() or load()")

    # -- persistence -----------------------------------------------------------------------
    def hyper_parameters(self) -> dict[str, Any]:
        return {
            "prior": self.prior,
            "min_surprise": self.min_surprise,
            "calibration_margin": self.calibration_margin,
            "min_instances_for_calibration": self.min_instances_for_calibration,
        }

    def save(self, directory: str | Path) -> Path:
        self._check_fitted()
        out = Path(directory)
        out.mkdir(parents=True, exist_ok=True)
        import pyarrow.parquet as pq  # here: a hunt of JSON or EVTX never loads it (~17 ms)

        tables: dict[str, Any] = {}
        for name in TABLE_SCHEMAS:
            table: pa.Table = getattr(self, name + "_")
            path = out / f"{name}.parquet"
            pq.write_table(table, path, compression="zstd")
            tables[name] = {"file": path.name, "rows": table.num_rows, "sha256": _sha256(path)}
        validate_hyper_parameters(self.hyper_parameters())
        manifest: dict[str, Any] = {
            "format": BASELINE_FORMAT,
            "version": BASELINE_VERSION,
            "hyper_parameters": self.hyper_parameters(),
            "meta": self.meta_,
            "tables": tables,
        }
        manifest["checksum"] = manifest_checksum(manifest)
        (out / "manifest.json").write_text(
            json.dumps(manifest, indent=2, sort_keys=True, allow_nan=False)
        )
        return out

    @classmethod
    def load(cls, directory: str | Path) -> ProgramBaseline:
        base = Path(directory)
        mpath = base / "manifest.json"
        hint = "train one with `unbacked train PATH... -o DIR`"
        if not mpath.is_file():
            raise BaselineError("no baseline manifest.json", source=str(base), hint=hint)
        try:
            manifest = json.loads(mpath.read_text(), parse_constant=_reject_constant)
        except (OSError, ValueError) as exc:
            raise BaselineError(
                f"baseline manifest is not valid JSON: {exc}", source=str(mpath)
            ) from exc
        validate_manifest(manifest, str(mpath))
        import pyarrow.parquet as pq

        hyper = manifest["hyper_parameters"]
        model = cls(**hyper)
        for name, schema in TABLE_SCHEMAS.items():
            entry = manifest["tables"][name]
            path = base / entry["file"]
            if not path.is_file():
                raise BaselineError(f"baseline table {path.name} is missing", source=str(base))
            if entry["sha256"] != _sha256(path):
                raise BaselineError(
                    f"baseline table {path.name} does not match its checksum",
                    source=str(path),
                    hint="the baseline was modified or truncated; retrain or restore it",
                )
            try:
                table = pq.read_table(path)
            except (OSError, pa.ArrowException) as exc:
                raise BaselineError(f"unreadable table {path.name}", source=str(path)) from exc
            if not table.schema.equals(schema, check_metadata=False):
                raise BaselineError(
                    f"table {path.name} has schema {table.schema}, expected {schema}",
                    source=str(path),
                )
            if table.num_rows != entry["rows"]:
                raise BaselineError(
                    f"tables.{name}.rows: the manifest says {entry['rows']}, the table holds "
                    f"{table.num_rows}",
                    source=str(path),
                )
            _validate_table(name, table, str(path))
            setattr(model, name + "_", table)
        model.meta_ = dict(manifest["meta"])
        return model


# -- validation ------------------------------------------------------------------------------
#: hyper-parameter -> (type, lowest, highest, lowest allowed?)
HYPER_PARAMETERS: dict[str, tuple[type, float, float, bool]] = {
    # weight of the population in a program's estimate: 0 would make unseen values infinitely
    # surprising, a negative weight turns probabilities negative
    "prior": (float, 0.0, 1e6, False),
    "min_surprise": (float, 0.0, 1024.0, True),
    "calibration_margin": (float, 0.0, 1024.0, True),
    "min_instances_for_calibration": (int, 1, 2**31, True),
}
_META_COUNTS = ("facts", "programs")
_MANIFEST_KEYS = {"format", "version", "hyper_parameters", "meta", "tables", "checksum"}


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def _fail(field: str, problem: str, source: str | None) -> BaselineError:
    return BaselineError(
        f"baseline manifest field {field!r}: {problem}",
        source=source,
        hint="the baseline was edited or damaged; retrain it with `unbacked train`",
    )


def validate_hyper_parameters(hyper: Any, source: str | None = None) -> None:
    """Every hyper-parameter present, of its type, finite and in range; ``BaselineError``
    naming the field otherwise."""
    if not isinstance(hyper, dict):
        raise _fail("hyper_parameters", f"expected an object, got {type(hyper).__name__}", source)
    extra = sorted(set(hyper) - set(HYPER_PARAMETERS))
    if extra:
        raise _fail(f"hyper_parameters.{extra[0]}", "unknown hyper-parameter", source)
    for key, (kind, low, high, low_ok) in HYPER_PARAMETERS.items():
        field = f"hyper_parameters.{key}"
        if key not in hyper:
            raise _fail(field, "missing", source)
        v = hyper[key]
        if isinstance(v, bool) or not isinstance(v, int | float):
            raise _fail(field, f"expected a number, got {type(v).__name__}", source)
        if kind is int and not isinstance(v, int):
            raise _fail(field, f"expected an integer, got {v!r}", source)
        if not math.isfinite(v):
            raise _fail(field, f"expected a finite number, got {v!r}", source)
        if v < low or (v == low and not low_ok) or v > high:
            bound = ">=" if low_ok else ">"
            raise _fail(field, f"{v!r} is out of range (expected {bound} {low}, <= {high})", source)


def manifest_checksum(manifest: dict[str, Any]) -> str:
    """SHA-256 over every manifest field but ``checksum`` (canonical JSON)."""
    body = {k: v for k, v in manifest.items() if k != "checksum"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), allow_nan=False)
    return "sha256:" + hashlib.sha256(text.encode("utf-8")).hexdigest()


def validate_manifest(manifest: Any, source: str | None = None) -> None:
    """The manifest's schema: types, ranges, finite numbers, table entries, and its checksum.

    Raises ``BaselineError`` naming the first field that is wrong.
    """
    hint = "train one with `unbacked train PATH... -o DIR`"
    if not isinstance(manifest, dict) or manifest.get("format") != BASELINE_FORMAT:
        raise BaselineError("not an unbacked baseline", source=source, hint=hint)
    version = manifest.get("version")
    if version != BASELINE_VERSION or isinstance(version, bool):
        old = isinstance(version, int) and not isinstance(version, bool) and version == 1
        raise BaselineError(
            f"baseline version {version!r} is not supported "
            f"(this unbacked reads version {BASELINE_VERSION})"
            + ("; version 1 manifests carry no checksum over their settings" if old else ""),
            source=source,
            hint="retrain the baseline with this version of unbacked",
        )
    extra = sorted(set(manifest) - _MANIFEST_KEYS)
    if extra:
        raise _fail(extra[0], "unknown field", source)
    checksum = manifest.get("checksum")
    if not isinstance(checksum, str):
        raise _fail("checksum", "missing or not a string", source)
    try:
        expected = manifest_checksum(manifest)
    except ValueError as exc:  # NaN or infinity somewhere
        raise _fail(
            "checksum", f"the manifest holds a value JSON cannot carry ({exc})", source
        ) from None
    if checksum != expected:
        raise _fail(
            "checksum",
            "does not match the manifest (a setting, count or table entry was changed)",
            source,
        )
    validate_hyper_parameters(manifest.get("hyper_parameters"), source)
    meta = manifest.get("meta")
    if not isinstance(meta, dict):
        raise _fail("meta", f"expected an object, got {type(meta).__name__}", source)
    for key in _META_COUNTS:
        v = meta.get(key)
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise _fail(f"meta.{key}", f"expected a count (integer >= 0), got {v!r}", source)
    learned = meta.get("learned_at")
    if learned is not None:
        try:
            if not isinstance(learned, str):
                raise ValueError(learned)
            datetime.fromisoformat(learned)
        except ValueError:
            raise _fail("meta.learned_at", f"not an ISO time: {learned!r}", source) from None
    tables = manifest.get("tables")
    if not isinstance(tables, dict):
        raise _fail("tables", f"expected an object, got {type(tables).__name__}", source)
    for name in sorted(set(tables) - set(TABLE_SCHEMAS)):
        raise _fail(f"tables.{name}", "unknown table", source)
    for name in TABLE_SCHEMAS:
        entry = tables.get(name)
        field = f"tables.{name}"
        if not isinstance(entry, dict):
            raise BaselineError(f"manifest lists no table {name!r}", source=source)
        if set(entry) != {"file", "rows", "sha256"}:
            raise _fail(field, "expected exactly file, rows and sha256", source)
        if entry["file"] != f"{name}.parquet":
            # never follow paths out of the directory
            raise _fail(f"{field}.file", f"expected {name}.parquet, got {entry['file']!r}", source)
        rows = entry["rows"]
        if isinstance(rows, bool) or not isinstance(rows, int) or rows < 0:
            raise _fail(f"{field}.rows", f"expected a count (integer >= 0), got {rows!r}", source)
        sha = entry["sha256"]
        if not isinstance(sha, str) or len(sha) != 64 or any(c not in _HEX for c in sha):
            raise _fail(f"{field}.sha256", "expected 64 hexadecimal digits", source)


_HEX = frozenset("0123456789abcdef")
_COUNT_COLUMNS = ("instances", "events", "programs")


def _validate_table(name: str, table: pa.Table, source: str) -> None:
    """Counts are non-negative, thresholds finite, keys present."""
    import pyarrow.compute as pc

    for col in table.column_names:
        column = table.column(col)
        if col in _COUNT_COLUMNS:
            low = pc.min(column).as_py()
            if column.null_count or (low is not None and low < 0):
                raise BaselineError(
                    f"table {name}: column {col!r} holds a negative or missing count",
                    source=source,
                    hint="the baseline was modified; retrain it",
                )
        elif col == "threshold":
            finite = pc.all(pc.is_finite(column)).as_py()
            if column.null_count or finite is False:
                raise BaselineError(
                    f"table {name}: column 'threshold' holds a value that is not finite",
                    source=source,
                    hint="the baseline was modified; retrain it",
                )
        elif column.null_count:
            raise BaselineError(
                f"table {name}: column {col!r} holds missing values", source=source,
                hint="the baseline was modified; retrain it",
            )  # fmt: skip


def with_event_counts(facts: pa.Table) -> pa.Table:
    """Facts with an ``events`` column: 1 per row for per-event facts; instance-level facts
    (``instance_facts``) carry how many events each stands for."""
    if "events" in facts.column_names:
        return facts
    return facts.append_column("events", pa.array(np.ones(facts.num_rows, dtype=np.int64)))


def instance_facts(facts: pa.Table) -> pa.Table:
    """One row per (instance, program, feature, value): its first event's ``row`` and the
    number of events. Baselines count instances, so learning and scoring on this table give
    the same numbers as on every event, with far fewer rows."""
    if facts.num_rows == 0:
        return with_event_counts(facts)
    agg = facts.group_by(
        ["process_uid", "program", "feature", "value"], use_threads=False
    ).aggregate([("row", "min"), ("row", "count")])
    out = pa.table(
        {
            "row": agg["row_min"],
            "process_uid": agg["process_uid"],
            "program": agg["program"],
            "feature": agg["feature"],
            "value": agg["value"],
            "events": agg["row_count"],
        }
    )
    return out.sort_by([("row", "ascending"), ("feature", "ascending")])


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def surprise_to_score(surprise: Any, threshold: Any, weight: Any) -> Any:
    """Map bits above threshold to a 0-100 score scaled by the feature's weight (scalars or
    NumPy arrays, elementwise)."""
    excess = np.maximum(np.subtract(surprise, threshold), 0.0) + 1.0
    return 100.0 * np.multiply(weight, 1.0 - np.power(2.0, -excess / 2.0))
