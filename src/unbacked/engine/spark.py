"""The Spark engine: the embedded pipeline, run per host on Apache Spark, with identical results.

Nothing about detection is reimplemented here. Spark only moves data:

1. **Read** the event lake (``unbacked export --parquet DIR``, or any Parquet of
   ``EVENT_SCHEMA``) and **shuffle by host**: every process lives on one host, so a host's events
   hold every process's whole history (and both ends of an injection). Each host's events are
   sorted into the embedded engine's read order (``lake_seq``), because per-process state depends
   on order.
2. **Baseline** (``train``; ``hunt`` without ``--baseline``; ``engine.partitions``): per group
   of whole hosts, the embedded code (``engine.local.learn_baseline``: ``DetectionContext``
   facts and ``ProgramBaseline.learn``) counts those hosts' process instances. Instance counts are
   counts of distinct process uids, and a process uid belongs to one host, so the per-host
   counts *add up* exactly to the counts over all facts; the sums are aggregated by Spark
   (shuffled by program/feature/value, small) and sorted on the driver the way ``learn``
   sorts. What is not additive is recomputed from the summed value counts: ``programs`` of
   the population table, and event totals (a host may see a feature without its
   absence-aware denominator). The engine checks the one-host-per-process premise in the
   same job and refuses data that breaks it.
3. **Calibration** (``train``): the summed baseline is broadcast; per host,
   ``ProgramBaseline.score(..., exclude_self=True)`` (the embedded code) gives each fact's
   leave-one-out surprise; maxima per program/feature are combined with ``max`` (exact).
4. **Detection**: the baseline is broadcast; per host, ``engine.local.detect_events`` runs the
   rules, baseline scoring and correlation, with ``self_baselined=True`` when the baseline was
   learned from the same lake (the embedded engine's leave-one-out self-baselining). Alerts come
   back as OCSF JSON strings and are sorted with ``sort_alerts``.

The result is the embedded engine's result on the same lake: same baseline tables (byte for byte
once saved) and the same alerts (``tests/engine/test_spark_*.py``).
"""

from __future__ import annotations

import os
import re
import shutil
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
import pyarrow as pa
import pyarrow.compute as pc

from unbacked.correlate.incidents import CorrelationConfig
from unbacked.detect import ProgramBaseline
from unbacked.detect.baseline import TABLE_SCHEMAS
from unbacked.detect.features import FACTS_SQL
from unbacked.engine import partitions
from unbacked.errors import DependencyError, InputError
from unbacked.model.alert import Alerts, sort_alerts
from unbacked.model.schema import EVENT_SCHEMA, conform
from unbacked.render.ocsf_codec import alert_from_ocsf, alert_to_ocsf
from unbacked.runreport import RunReport

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

INSTALL_HINT = "pip install 'unbacked[spark]' (and a Java 17+ runtime, e.g. default-jre-headless)"
#: the column ``unbacked export --parquet`` adds: the event's position in the embedded read order
LAKE_SEQ = "lake_seq"
#: sort key within a host when the lake has no ``lake_seq`` (Parquet written by other tools)
FALLBACK_ORDER = ("time", "src_file", "src_record", "src_line")
#: settings the engine needs; anything given with ``--spark-conf`` wins
DEFAULT_CONF: dict[str, str] = {
    # unbacked's times are nanoseconds; Spark's own timestamps are microseconds
    "spark.sql.legacy.parquet.nanosAsLong": "true",
    "spark.sql.session.timeZone": "UTC",
    "spark.sql.execution.arrow.pyspark.enabled": "true",
}

#: events per call of the embedded pipeline on an executor (whole hosts; see ``_host_tables``)
CHUNK_ROWS = 200_000

_PARTIAL_SCHEMA = (
    "tbl string, program string, feature string, value string, instances long, events long"
)
_MAX_SCHEMA = "program string, feature string, surprise double"
_ALERT_SCHEMA = "host string, events long, alert string"


# -- session ------------------------------------------------------------------------------------
@contextmanager
def _quiet() -> Iterator[None]:
    """pyspark warns that it does not yet support the installed pandas; the engine exchanges
    Arrow only (never pandas), so the warning does not apply here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas")
        yield


def require_pyspark() -> None:
    """Raise ``DependencyError`` with the install command when pyspark or Java is missing."""
    try:
        import pyspark  # noqa: F401
    except ImportError as exc:
        raise DependencyError("the Spark engine needs pyspark", hint=INSTALL_HINT) from exc
    if not (os.environ.get("JAVA_HOME") or shutil.which("java")):
        raise DependencyError(
            "the Spark engine needs a Java runtime (no java on PATH, no JAVA_HOME)",
            hint="install Java 17+, e.g. apt-get install default-jre-headless",
        )


def spark_session(
    master: str = "local[*]", conf: Mapping[str, str] | None = None, app_name: str = "unbacked"
) -> SparkSession:
    """A SparkSession for the engine (an existing one is reused, with the engine's settings)."""
    require_pyspark()
    from pyspark.sql import SparkSession

    settings = {**DEFAULT_CONF, **(conf or {})}
    builder = SparkSession.builder.master(master).appName(app_name)
    for key, value in settings.items():
        builder = builder.config(key, value)
    with _quiet():
        spark = builder.getOrCreate()
    for key in DEFAULT_CONF:  # runtime settings also apply to a session that already existed
        spark.conf.set(key, settings[key])
    return spark


def parse_conf(pairs: Sequence[str]) -> dict[str, str]:
    """``KEY=VALUE`` strings (``--spark-conf``) as a dict."""
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key.strip():
            raise InputError(f"--spark-conf expects KEY=VALUE, got {pair!r}")
        out[key.strip()] = value
    return out


# -- reading ------------------------------------------------------------------------------------
def check_lake(paths: Sequence[str | Path]) -> None:
    """Fail early, before a JVM starts, on local lake paths that are missing or hold no Parquet
    (object-store URLs are left to Spark)."""
    for p in paths:
        if "://" in str(p):
            continue
        if not Path(p).exists():
            raise InputError("no such lake path", source=str(p))
        if Path(p).is_dir() and next(Path(p).rglob("*.parquet"), None) is None:
            raise InputError(
                "no Parquet files in the lake directory",
                source=str(p),
                hint="write the lake with `unbacked export --parquet DIR PATH...` (PATH may be "
                "OCSF Parquet, e.g. a Security Lake export: it is converted to the event model)",
            )


def read_lake(spark: SparkSession, paths: Sequence[str | Path]) -> DataFrame:
    """The events of a Parquet lake (every ``*.parquet`` below ``paths``), ``EVENT_SCHEMA`` columns
    plus ``lake_seq`` when present. Partition directories are not parsed: the host is a column of
    every file, whatever the layout."""
    check_lake(paths)
    df = (
        spark.read.option("recursiveFileLookup", "true")
        .option("pathGlobFilter", "*.parquet")
        .parquet(*[str(p) for p in paths])
    )
    present = set(df.columns)
    if "class_uid" in present and "kind" not in present:
        return _ocsf_events(spark, df)
    missing = [c for c in ("time", "kind", "activity") if c not in present]
    if missing:
        raise InputError(
            f"the lake has no {', '.join(missing)} column: not unbacked event Parquet",
            source=", ".join(str(p) for p in paths),
            hint="write the lake with `unbacked export --parquet DIR PATH...` (PATH may be "
            "OCSF Parquet, e.g. a Security Lake export: it is converted to the event model)",
        )
    cols = [c for c in [*EVENT_SCHEMA.names, LAKE_SEQ] if c in present]
    return df.select(*cols)


#: the embedded engine's canonical event order (``engine.local.canonical_order``)
CANONICAL_ORDER = ("src_file", "src_line", "src_record")


def by_host(events: DataFrame) -> DataFrame:
    """Events shuffled by host and sorted, within each partition, by host then the embedded
    engine's canonical order (file, line, record; nulls last as Arrow sorts them)."""
    from pyspark.sql import functions as F

    if all(c in events.columns for c in CANONICAL_ORDER):
        order = [F.col(c).asc_nulls_last() for c in CANONICAL_ORDER]
    elif LAKE_SEQ in events.columns:
        order = [F.col(LAKE_SEQ).asc()]
    else:
        order = [F.col(c).asc_nulls_last() for c in FALLBACK_ORDER if c in events.columns]
    parts = int(events.sparkSession.conf.get("spark.sql.shuffle.partitions") or 200)
    return events.repartition(parts, "host").sortWithinPartitions(F.col("host"), *order)


def _lake_schema(spark: SparkSession) -> Any:
    """How Spark reads an EVENT_SCHEMA Parquet lake (its column types), learned by reading an
    empty one: what the OCSF path must produce so the rest of the engine sees one kind of lake."""
    import tempfile

    import pyarrow.parquet as pq

    with tempfile.TemporaryDirectory(prefix="unbacked-schema-") as tmp:
        path = Path(tmp) / "empty.parquet"
        pq.write_table(EVENT_SCHEMA.empty_table(), path)
        return spark.read.parquet(str(path)).schema


def _ocsf_events(spark: SparkSession, df: DataFrame) -> DataFrame:
    """OCSF Parquet (Security Lake layout) as events, through the one OCSF mapping
    (``sources/ocsf.py``) the embedded engine's ``ocsf-parquet`` source uses: each row becomes a
    JSON line (times as epoch milliseconds), numbered by its row in its file, and the JSON-lines
    engine maps the lines per file inside ``mapInArrow``. Provenance (file, row) is the embedded
    engine's, so both engines order and explain events the same way."""
    from pyspark.sql import functions as F
    from pyspark.sql.types import TimestampNTZType, TimestampType

    cols = [
        F.unix_millis(F.col(f.name)).alias(f.name)
        if isinstance(f.dataType, TimestampType | TimestampNTZType) and f.name.endswith("time")
        else F.col(f.name)
        for f in df.schema.fields
    ]
    lines = df.select(
        F.to_json(F.struct(*cols)).alias("line"),
        F.regexp_replace(F.col("_metadata.file_path"), "^file:(//)?", "").alias("file"),
        (F.col("_metadata.row_index") + 1).alias("ln"),
    )
    schema = _lake_schema(spark)
    from pyspark.sql.pandas.types import to_arrow_schema

    arrow_schema = to_arrow_schema(schema)

    def convert(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from unbacked.sources.ocsf import map_ocsf_lines

        for batch in batches:
            table = pa.Table.from_batches([batch])
            files = table.column("file").cast(pa.string())
            for name in pc.unique(files).to_pylist():
                part = table.filter(pc.equal(files, name))
                events = map_ocsf_lines(
                    part.column("line").combine_chunks().cast(pa.string()),
                    part.column("ln").to_numpy(),
                    src_format="ocsf-parquet",
                    src_file=name,
                )
                if events is None or events.num_rows == 0:
                    continue
                yield from _as_lake(events, arrow_schema).to_batches()

    return lines.mapInArrow(convert, schema)


def _as_lake(events: pa.Table, arrow_schema: pa.Schema) -> pa.Table:
    """EVENT_SCHEMA rows in the column types Spark reads a lake with."""
    cols = []
    for f in arrow_schema:
        col = events.column(f.name)
        if pa.types.is_dictionary(col.type):
            col = col.cast(col.type.value_type)
        if pa.types.is_timestamp(col.type) and not pa.types.is_timestamp(f.type):
            col = col.cast(pa.int64())
        cols.append(col.cast(f.type))
    return pa.Table.from_arrays(cols, schema=arrow_schema)


def fact_columns(events: DataFrame) -> DataFrame:
    """Only the columns the facts are computed from (plus host and order), for the passes that
    need facts only: half the columns, half the shuffle. The names are those the feature SQL
    mentions, so a feature reading a new column brings it along."""
    used = {c for c in EVENT_SCHEMA.names if re.search(rf"\b{c}\b", FACTS_SQL)}
    used |= {"host", "process_uid", "image", "target_image", "time", "kind", "activity"}
    used |= set(FALLBACK_ORDER) | set(CANONICAL_ORDER) | {LAKE_SEQ}
    return events.select(*[c for c in events.columns if c in used])


def _host_tables(batches: Iterator[pa.RecordBatch], chunk_rows: int = 0) -> Iterator[pa.Table]:
    """Cut a host-sorted stream of Arrow batches into event tables of whole hosts.

    A table is closed at the first host boundary after ``chunk_rows`` events (0: one table per
    host). Several hosts share one table because hosts are independent (the premise of the
    engine, and what the embedded engine does with every host in one table) while the embedded
    pipeline has a fixed cost per call (query planning), which one call per small host would
    pay thousands of times in a fleet. Memory is bounded by ``chunk_rows`` plus one host.
    """
    pending: list[pa.RecordBatch] = []
    rows = 0
    current: object = _Unset
    for batch in batches:
        if batch.num_rows == 0:
            continue
        hosts = batch.column(batch.schema.get_field_index("host")).cast(pa.string())
        runs = pc.run_end_encode(hosts)
        start = 0
        for value, end in zip(runs.values.to_pylist(), runs.run_ends.to_pylist(), strict=True):
            if current is not _Unset and value != current and pending and rows >= chunk_rows:
                yield _events(pending)
                pending, rows = [], 0
            current = value
            pending.append(batch.slice(start, end - start))
            rows += end - start
            start = end
    if pending:
        yield _events(pending)


class _Unset:
    """Marker: no host seen yet (``None`` is a host value: events without one)."""


def _events(batches: list[pa.RecordBatch]) -> pa.Table:
    """Spark's Arrow columns back to ``EVENT_SCHEMA`` (large strings, decimals for uint64,
    int64 nanoseconds)."""
    table = pa.Table.from_batches(batches)
    cols: dict[str, pa.ChunkedArray] = {}
    present = frozenset(table.column_names)
    for f in EVENT_SCHEMA:
        if f.name not in present:
            continue
        col = table.column(f.name)
        if pa.types.is_large_string(col.type):
            col = col.cast(pa.string())
        elif pa.types.is_timestamp(col.type) and col.type != f.type:
            col = col.cast(pa.timestamp("ns", tz="UTC"))
        cols[f.name] = col
    return conform(pa.table(cols) if cols else pa.table({}))


# -- baseline transport ---------------------------------------------------------------------
def _baseline_payload(baseline: ProgramBaseline) -> dict[str, Any]:
    """A learned baseline as Arrow IPC bytes (what is broadcast to the executors)."""
    tables = {}
    for name in TABLE_SCHEMAS:
        sink = pa.BufferOutputStream()
        table: pa.Table = getattr(baseline, name + "_")
        with pa.ipc.new_stream(sink, table.schema) as writer:
            writer.write_table(table)
        tables[name] = sink.getvalue().to_pybytes()
    return {"hyper": baseline.hyper_parameters(), "tables": tables, "meta": dict(baseline.meta_)}


def _baseline_from_payload(payload: Mapping[str, Any]) -> ProgramBaseline:
    baseline = ProgramBaseline(**payload["hyper"])
    for name, data in payload["tables"].items():
        setattr(baseline, name + "_", pa.ipc.open_stream(data).read_all())
    baseline.meta_ = dict(payload["meta"])
    return baseline


# -- per-host work (runs on the executors) ------------------------------------------------------
def _partial_counts(chunk_rows: int) -> Any:
    def work(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for events in _host_tables(batches, chunk_rows):
            yield from partitions.partial_rows(events).to_batches()

    return work


def _calibration_maxima(payload: Any, chunk_rows: int) -> Any:
    def work(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        baseline = _baseline_from_payload(payload.value)
        for events in _host_tables(batches, chunk_rows):
            yield from partitions.calibration_maxima(events, baseline).to_batches()

    return work


def _detect(
    payload: Any, self_baselined: bool, config: CorrelationConfig | None, chunk_rows: int
) -> Any:
    def work(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from unbacked.engine.local import detect_events

        baseline = _baseline_from_payload(payload.value)
        for events in _host_tables(batches, chunk_rows):
            result = detect_events(
                events, baseline=baseline, config=config, self_baselined=self_baselined
            )
            texts = [
                orjson.dumps(alert_to_ocsf(a), option=orjson.OPT_SORT_KEYS).decode()
                for a in result.alerts
            ]
            hosts = pc.unique(events.column("host").cast(pa.string())).to_pylist()
            events_per_host = [events.num_rows] + [0] * (len(hosts) - 1)
            yield pa.RecordBatch.from_pydict(
                {
                    "host": pa.array(hosts + [None] * len(texts), pa.string()),
                    "events": pa.array(events_per_host + [0] * len(texts), pa.int64()),
                    "alert": pa.array([None] * len(hosts) + texts, pa.string()),
                }
            )

    return work


# -- driver -------------------------------------------------------------------------------------
@dataclass(slots=True)
class SparkResult:
    """What one Spark run produced (the alerts are those of the embedded engine)."""

    alerts: Alerts
    baseline: ProgramBaseline | None
    events: int = 0
    hosts: int = 0
    timings: dict[str, float] = field(default_factory=dict)


def _collect(df: DataFrame) -> pa.Table:
    if hasattr(type(df), "toArrow"):  # Spark 4
        return df.toArrow()
    return pa.Table.from_batches(df._collect_as_arrow())  # type: ignore[operator]  # Spark 3.5


def learn_counts(
    events: DataFrame, *, chunk_rows: int = CHUNK_ROWS, **hyper: Any
) -> ProgramBaseline:
    """The uncalibrated baseline of the lake: ``ProgramBaseline.learn(facts, calibrate=False)``
    over all facts, computed per host and summed."""
    from pyspark.sql import functions as F

    with _quiet():
        partial = by_host(fact_columns(events)).mapInArrow(
            _partial_counts(chunk_rows), _PARTIAL_SCHEMA
        )
    summed = (
        partial.groupBy("tbl", "program", "feature", "value")
        .agg(F.sum("instances").alias("instances"), F.sum("events").alias("events"))
        .where((F.col("tbl") != "uid") | (F.col("instances") > 1))
    )
    return partitions.combine(_collect(summed), **hyper)


def calibrate(
    events: DataFrame, baseline: ProgramBaseline, *, chunk_rows: int = CHUNK_ROWS
) -> ProgramBaseline:
    """Per program/feature thresholds, as ``learn(calibrate=True)`` sets them."""
    from pyspark.sql import functions as F

    spark = events.sparkSession
    payload = spark.sparkContext.broadcast(_baseline_payload(baseline))
    try:
        with _quiet():
            maxima = (
                by_host(fact_columns(events))
                .mapInArrow(_calibration_maxima(payload, chunk_rows), _MAX_SCHEMA)
                .groupBy("program", "feature")
                .agg(F.max("surprise").alias("surprise"))
            )
            table = _collect(maxima)
    finally:
        payload.unpersist()
    return partitions.set_thresholds(baseline, table)


def train(
    lake: Sequence[str | Path],
    out_dir: str | Path | None = None,
    *,
    spark: SparkSession | None = None,
    master: str = "local[*]",
    conf: Mapping[str, str] | None = None,
    calibrate_thresholds: bool = True,
    chunk_rows: int = CHUNK_ROWS,
    **hyper: Any,
) -> ProgramBaseline:
    """``engine.local.train`` on Spark: the same calibrated baseline, saved when ``out_dir``."""
    spark = spark or spark_session(master, conf)
    events = read_lake(spark, lake)
    baseline = learn_counts(events, chunk_rows=chunk_rows, **hyper)
    if calibrate_thresholds:
        calibrate(events, baseline, chunk_rows=chunk_rows)
    if out_dir is not None:
        baseline.save(out_dir)
    return baseline


def hunt(
    lake: Sequence[str | Path],
    *,
    baseline: ProgramBaseline | str | Path | None = None,
    config: CorrelationConfig | None = None,
    spark: SparkSession | None = None,
    master: str = "local[*]",
    conf: Mapping[str, str] | None = None,
    chunk_rows: int = CHUNK_ROWS,
) -> SparkResult:
    """``engine.local.hunt`` on Spark. Without ``baseline`` the lake baselines itself (learned
    over every host, each instance left out of its own statistics), as the embedded engine.
    ``chunk_rows``: events handed to one call of the embedded pipeline (whole hosts)."""
    spark = spark or spark_session(master, conf)
    if isinstance(baseline, str | Path):
        baseline = ProgramBaseline.load(baseline)
    timings: dict[str, float] = {}
    t0 = time.perf_counter()
    events = read_lake(spark, lake)
    self_baselined = baseline is None
    if baseline is None:
        baseline = learn_counts(events, chunk_rows=chunk_rows)
        timings["baseline"] = time.perf_counter() - t0
    t1 = time.perf_counter()
    payload = spark.sparkContext.broadcast(_baseline_payload(baseline))
    try:
        with _quiet():
            work = _detect(payload, self_baselined, config, chunk_rows)
            table = _collect(by_host(events).mapInArrow(work, _ALERT_SCHEMA))
    finally:
        payload.unpersist()
    timings["detect"] = time.perf_counter() - t1
    texts = [t for t in table.column("alert").to_pylist() if t is not None]
    alerts = Alerts(sort_alerts([alert_from_ocsf(orjson.loads(t)) for t in texts]))
    return SparkResult(
        alerts=alerts,
        baseline=baseline,
        events=int(pc.sum(table.column("events")).as_py() or 0),
        hosts=int(pc.sum(pc.is_valid(table.column("host"))).as_py() or 0),
        timings=timings,
    )


# -- command line ---------------------------------------------------------------------------
def cli_session(master: str, conf_pairs: Sequence[str]) -> SparkSession:
    """The session of one CLI run (``--spark-master``, ``--spark-conf KEY=VALUE``), logging
    errors only so that the run's own summary stays readable."""
    conf = {"spark.ui.showConsoleProgress": "false", **parse_conf(conf_pairs)}
    spark = spark_session(master, conf)
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def cli_hunt(
    paths: Sequence[str],
    baseline: str | None,
    report: RunReport,
    config: CorrelationConfig,
    master: str,
    conf_pairs: Sequence[str],
    counted: bool = False,
) -> SparkResult:
    """``unbacked hunt|detect --engine spark``: the run, its counts in ``report`` (the lake as
    one input, unless ``counted``: a lake just exported from inputs the report already counts)."""
    check_lake(paths)
    result = hunt(paths, baseline=baseline, config=config, spark=cli_session(master, conf_pairs))
    if not counted:
        lake = report.file(", ".join(str(p) for p in paths), "unbacked-parquet (spark)")
        lake.records = lake.events = result.events
    report.alerts = len(result.alerts)
    report.extra["engine"] = {"name": "spark", "hosts": result.hosts, "timings": result.timings}
    report.finish()
    return result


def cli_train(
    paths: Sequence[str], out_dir: str, master: str, conf_pairs: Sequence[str]
) -> ProgramBaseline:
    """``unbacked train --engine spark``."""
    check_lake(paths)
    return train(paths, out_dir, spark=cli_session(master, conf_pairs))
