"""One baseline from many partitions of whole hosts: what both engines do once the events no
longer fit in one table (the embedded engine's spill, ``engine.spill``; Spark's executors).

Instance counts are counts of distinct process uids, and a process uid belongs to one host, so
counts learned per partition of whole hosts *add up* exactly to the counts over all facts:

1. ``partial_rows(events)``: per partition, ``ProgramBaseline.learn`` over its facts (the
   embedded code), as tagged rows to be summed, plus one row per process uid (the premise check).
2. ``combine(rows)``: the sums, sorted and typed the way ``learn`` sorts and types its tables.
   What is not additive is recomputed from the summed value counts: ``programs`` of the
   population table, and event totals (a partition may see a feature without its
   absence-aware denominator). A process uid in two partitions breaks the premise and is refused.
3. ``calibration_maxima(events, baseline)`` per partition, then ``set_thresholds`` with the
   maximum over partitions: exactly ``learn(calibrate=True)``'s thresholds (a max of maxima).

Rows can be pre-summed before ``combine`` (Spark sums on the executors): summing sums is exact.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Any

import duckdb
import pyarrow as pa
import pyarrow.compute as pc

from unbacked import duck
from unbacked.detect import DetectionContext, ProgramBaseline, learn_baseline
from unbacked.detect.baseline import TABLE_SCHEMAS
from unbacked.errors import InputError

#: the tagged row layout of ``partial_rows`` (``tbl`` names the baseline table a row adds to)
PARTIAL_SCHEMA = pa.schema(
    [
        ("tbl", pa.string()),
        ("program", pa.string()),
        ("feature", pa.string()),
        ("value", pa.string()),
        ("instances", pa.int64()),
        ("events", pa.int64()),
    ]
)
#: the layout of ``calibration_maxima``
MAXIMA_SCHEMA = pa.schema(
    [("program", pa.string()), ("feature", pa.string()), ("surprise", pa.float64())]
)


def partial_rows(events: pa.Table, **hyper: Any) -> pa.Table:
    """The uncalibrated baseline of one partition of whole hosts, as rows to be summed."""
    part = learn_baseline(events, calibrate=False, **hyper)  # the embedded engine's own learning
    return rows_of(part, events)


def rows_of(part: ProgramBaseline, events: pa.Table) -> pa.Table:
    """``part``, the uncalibrated baseline learned from ``events`` (one partition), as rows."""
    return pa.concat_tables(
        [
            _tagged("counts", part.counts_),
            _tagged("totals", part.totals_),
            _tagged("population", part.population_),
            _tagged("population_totals", part.population_totals_),
            _tagged("facts", pa.table({"events": pa.array([part.meta_["facts"]], pa.int64())})),
            # one row per process: ``combine`` checks that no process spans two partitions
            _tagged("uid", _uids(events)),
        ]
    )


def combine(rows: pa.Table | Iterable[pa.Table], **hyper: Any) -> ProgramBaseline:
    """The baseline ``learn(facts, calibrate=False)`` would learn over every partition's facts.

    Raises ``InputError`` when a process uid appears in two partitions (its facts were counted
    twice and its history is split: the partitioning premise does not hold for this data)."""
    if not isinstance(rows, pa.Table):
        rows = pa.concat_tables(list(rows)) if rows else PARTIAL_SCHEMA.empty_table()
    with duck.session(r=rows) as con:
        con.execute(
            """CREATE TEMP TABLE p AS
               SELECT tbl, program, feature, value,
                      sum(instances)::BIGINT AS instances, sum(events)::BIGINT AS events
                 FROM r GROUP BY ALL"""
        )
        spanning = con.execute(
            "SELECT value, instances FROM p WHERE tbl = 'uid' AND instances > 1 "
            "ORDER BY ALL LIMIT 5"
        ).fetchall()
        if spanning:
            raise InputError(
                f"process uids appear on more than one host ({spanning[0][0]!r} in "
                f"{spanning[0][1]} host partitions): the engine keeps each process on one host",
                hint="process uids must be unique per host (Sysmon ProcessGuid, host:pid:start)",
            )
        baseline = ProgramBaseline(**hyper)
        baseline.counts_ = _final(
            con, "SELECT program, feature, value, instances, events FROM p WHERE tbl = 'counts'",
            "counts",
        )  # fmt: skip
        con.register("counts", baseline.counts_)
        # Event totals are recounted from the value counts: for an absence-aware feature,
        # ``learn`` keeps the events of every (program, feature) whose denominator appears
        # anywhere, which a partition that saw the feature but not its denominator would drop.
        baseline.totals_ = _final(
            con,
            """SELECT t.program, t.feature, t.instances, coalesce(e.events, 0) AS events
                 FROM p t LEFT JOIN (SELECT program, feature, sum(events) AS events
                                       FROM counts GROUP BY ALL) e
                   ON t.program IS NOT DISTINCT FROM e.program AND t.feature = e.feature
                WHERE t.tbl = 'totals'""",
            "totals",
        )
        baseline.population_ = _final(
            con,
            """SELECT p.feature, p.value, p.instances, p.events,
                      coalesce(c.programs, 0) AS programs
                 FROM p LEFT JOIN (SELECT feature, value, count(DISTINCT program) AS programs
                                     FROM counts GROUP BY ALL) c
                   ON p.feature IS NOT DISTINCT FROM c.feature
                  AND p.value IS NOT DISTINCT FROM c.value
                WHERE p.tbl = 'population'""",
            "population",
        )
        con.register("population", baseline.population_)
        baseline.population_totals_ = _final(
            con,
            """SELECT t.feature, t.instances, coalesce(e.events, 0) AS events
                 FROM p t LEFT JOIN (SELECT feature, sum(events) AS events
                                       FROM population GROUP BY ALL) e USING (feature)
                WHERE t.tbl = 'population_totals'""",
            "population_totals",
        )
        n_facts = con.execute(
            "SELECT coalesce(sum(events), 0) FROM p WHERE tbl = 'facts'"
        ).fetchall()
    baseline.thresholds_ = TABLE_SCHEMAS["thresholds"].empty_table()
    assert baseline.totals_ is not None
    baseline.meta_ = {  # ``learn``'s metadata, from the summed tables
        "learned_at": datetime.now(UTC).isoformat(),
        "facts": int(n_facts[0][0]),
        "programs": len(set(baseline.totals_.column("program").to_pylist())),
    }
    return baseline


def calibration_maxima(
    events: pa.Table | None, baseline: ProgramBaseline, *, instance_facts: pa.Table | None = None
) -> pa.Table:
    """Per program/feature, the highest leave-one-out surprise of one partition's instances
    (the facts ``learn`` scores its own instances on), for ``set_thresholds``.
    ``instance_facts``: those of ``events`` when already computed."""
    facts = instance_facts
    if facts is None:
        assert events is not None, "events or their instance_facts"
        facts = DetectionContext.build(events).instance_facts
    scored = baseline.score(facts, exclude_self=True, calibrated=False)
    return duck.query(
        """SELECT program, feature, max(surprise) AS surprise FROM s
            WHERE n + 1 >= $min_instances::BIGINT
            GROUP BY ALL""",
        {"min_instances": baseline.min_instances_for_calibration},
        s=scored,
    ).cast(MAXIMA_SCHEMA)


def set_thresholds(
    baseline: ProgramBaseline, maxima: pa.Table | Iterable[pa.Table]
) -> ProgramBaseline:
    """Per program/feature thresholds from every partition's maxima, as
    ``learn(calibrate=True)`` sets them."""
    if not isinstance(maxima, pa.Table):
        maxima = pa.concat_tables(list(maxima)) if maxima else MAXIMA_SCHEMA.empty_table()
    with duck.session(m=maxima) as con:
        baseline.thresholds_ = _final(
            con,
            """SELECT program, feature, max(surprise) + $margin::DOUBLE AS threshold
                 FROM m GROUP BY ALL""",
            "thresholds",
            {"margin": baseline.calibration_margin},
        )
    return baseline


def _final(
    con: duckdb.DuckDBPyConnection, query: str, name: str, params: dict[str, Any] | None = None
) -> pa.Table:
    """A summed table in ``learn``'s order and types (DuckDB ``ORDER BY ALL``, as ``learn``)."""
    return duck.sql(con, f"SELECT * FROM ({query}) ORDER BY ALL", params).cast(TABLE_SCHEMAS[name])


def _uids(events: pa.Table) -> pa.Table:
    uids = pc.unique(pc.drop_null(events.column("process_uid")))
    return pa.table(
        {"value": uids.cast(pa.string()), "instances": pa.array([1] * len(uids), pa.int64())}
    )


def _tagged(tbl: str, table: pa.Table | None) -> pa.Table:
    assert table is not None
    n = table.num_rows
    cols = []
    present = frozenset(table.column_names)
    for f in PARTIAL_SCHEMA:
        if f.name == "tbl":
            cols.append(pa.array([tbl] * n, pa.string()))
        elif f.name in present:
            cols.append(table.column(f.name).cast(f.type))
        else:
            cols.append(pa.nulls(n, f.type))
    return pa.Table.from_arrays(cols, schema=PARTIAL_SCHEMA)
