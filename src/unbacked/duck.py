"""One in-memory DuckDB database per process, a cheap connection to it per query.

``duckdb.connect()`` creates a new database each time (~13 ms: catalog, buffer manager, settings);
``cursor()`` on an existing one costs ~0.25 ms. A hunt on a small file runs several queries, so
the stages share one database and each takes its own connection: what a query registers or
creates as TEMP is private to that connection, and connections can be used from different
threads. A forked child (Spark's Python workers) gets a database of its own.

Code asks through two helpers rather than handling connections itself: ``query`` runs one
statement over Arrow tables and returns an Arrow table; ``session`` yields a connection with the
tables registered, for several statements (a TEMP view or table, then queries over it), and
closes it on the way out, error or not. Values go in as ``params`` (``$name``), never into the
SQL text.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from typing import TYPE_CHECKING, Any

import duckdb

if TYPE_CHECKING:
    import pyarrow as pa

_lock = threading.Lock()
_db: duckdb.DuckDBPyConnection | None = None
_pid = 0


#: optimizer passes that cost more than they save on unbacked's queries: the facts query reads
#: one CTE of events from ten UNION ALL branches, and pushing every branch's filter into the
#: CTE (``cte_filter_pusher``) or deciding CTE by CTE whether to inline it (``cte_inlining``)
#: took 60-120 ms of planning on 16 events and ~0.9 s of 2.8 s on 10^6 (bench/bench_score.py,
#: docs/benchmarks.md); results are the same with and without (golden and parity tests)
DISABLED_OPTIMIZERS = ("cte_filter_pusher", "cte_inlining")


def _tune(db: duckdb.DuckDBPyConnection) -> None:
    """Leave out ``DISABLED_OPTIMIZERS`` that this DuckDB has (a name it does not know is
    an error there, and a missing pass costs nothing)."""
    known = {r[0] for r in db.execute("SELECT name FROM duckdb_optimizers()").fetchall()}
    names = [n for n in DISABLED_OPTIMIZERS if n in known]
    if names:
        db.execute(f"SET disabled_optimizers = '{','.join(names)}'")


def connect() -> duckdb.DuckDBPyConnection:
    """A new connection to the process's shared in-memory database; close it when done
    (``session`` does)."""
    global _db, _pid
    with _lock:
        if _db is None or _pid != os.getpid():
            _db = duckdb.connect(":memory:")
            _tune(_db)
            _pid = os.getpid()
        return _db.cursor()


def open_in_background() -> threading.Thread | None:
    """Create the process's database on a thread of its own, so that a command's first query
    does not wait for it; the thread, or None when the database is there already.

    Creating it takes 25-50 ms, most of it with the GIL released, while a hunt spends its
    first ~60 ms on finding plug-ins and choosing readers (docs/benchmarks.md). ``connect``
    waits for the thread (they share a lock). The thread is not a daemon: the interpreter
    waits for it at exit rather than stopping it inside DuckDB. A failure there is left for
    the first query to report.
    """
    with _lock:
        if _db is not None and _pid == os.getpid():
            return None
    thread = threading.Thread(target=_open, name="unbacked-duckdb-open")
    thread.start()
    return thread


def _open() -> None:
    with suppress(duckdb.Error):
        connect().close()


@contextmanager
def session(**tables: pa.Table) -> Iterator[duckdb.DuckDBPyConnection]:
    """A connection with ``tables`` registered under their keyword names (views private to
    it), closed on exit."""
    con = connect()
    try:
        for name, table in tables.items():
            con.register(name, table)
        yield con
    finally:
        con.close()


def sql(
    con: duckdb.DuckDBPyConnection, statement: str, params: Mapping[str, Any] | None = None
) -> pa.Table:
    """The result of ``statement`` on ``con`` (a ``session``'s) as an Arrow table; values go in
    as ``params`` (``$name``), never into the SQL text.

    Run with ``execute``, not as a relation (``con.sql(...).to_arrow_table()``): DuckDB 2's
    relation binds a statement once to learn its columns and again to run it: 10-15 ms more
    for the facts query, whatever the number of events (docs/benchmarks.md)."""
    if params:
        con.execute(statement, dict(params))
    else:
        con.execute(statement)
    return fetch_arrow(con)


#: what DuckDB 2 says when Arrow is taken from an executed statement rather than a relation
_COPY_WARNING = "Arrow output on a DB-API result makes an extra copy"
_QUIET = threading.Lock()


def fetch_arrow(con: duckdb.DuckDBPyConnection) -> pa.Table:
    """The result of the statement ``con.execute`` just ran, as an Arrow table.

    DuckDB 2 warns that this copies the rows once more than a relation's ``to_arrow_table``;
    the relation binds the statement twice instead, which costs more here (see ``sql``), so
    the warning is silenced for this call only. ``catch_warnings`` swaps the process's
    filters (before Python 3.14), so fetches take turns: one restoring the filters while
    another fetches would let that one's warning out."""
    with _QUIET, warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_COPY_WARNING, category=UserWarning)
        return con.to_arrow_table()


def query(
    statement: str, /, params: Mapping[str, Any] | None = None, **tables: pa.Table
) -> pa.Table:
    """The result of one ``statement`` over ``tables`` (registered under their keyword names,
    for this query only; none can be called ``params``) as an Arrow table; values go in as
    ``params`` (``$name``)."""
    with session(**tables) as con:
        return sql(con, statement, params)


__all__ = ["connect", "fetch_arrow", "open_in_background", "query", "session", "sql"]
