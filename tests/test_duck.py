"""The DuckDB query helpers (``unbacked.duck``): one shared in-memory database, a connection per
query or session, tables registered privately, closed on the way out, values as parameters."""

from __future__ import annotations

import threading
import warnings

import duckdb
import pyarrow as pa
import pytest

from unbacked import duck


def test_query_reads_its_tables() -> None:
    got = duck.query(
        "SELECT a.x, b.y FROM a JOIN b USING (k) ORDER BY a.x",
        a=pa.table({"k": [1, 2], "x": ["one", "two"]}),
        b=pa.table({"k": [2, 1], "y": [20, 10]}),
    )
    assert isinstance(got, pa.Table)
    assert got.to_pydict() == {"x": ["one", "two"], "y": [10, 20]}


def test_values_go_in_as_parameters_not_text() -> None:
    hostile = "x'; DROP TABLE t; --"
    got = duck.query("SELECT $v AS v, count(*) AS n FROM t", {"v": hostile}, t=pa.table({"a": [1]}))
    assert got.to_pydict() == {"v": [hostile], "n": [1]}
    # a statement with no parameters runs without them (None and an empty mapping alike)
    assert duck.query("SELECT 1 AS one", {}).to_pydict() == {"one": [1]}


def test_registered_tables_and_temp_views_are_private_to_the_session() -> None:
    with duck.session(mine=pa.table({"a": [1]})) as con:
        con.execute("CREATE TEMP VIEW also_mine AS SELECT a + 1 AS b FROM mine")
        with duck.session() as other:
            for name in ("mine", "also_mine"):
                with pytest.raises(duckdb.CatalogException):
                    other.sql(f"SELECT * FROM {name}").fetchall()
        assert duck.sql(con, "SELECT b FROM also_mine").to_pydict() == {"b": [2]}
    with pytest.raises(duckdb.CatalogException):
        duck.query("SELECT * FROM mine")


def test_a_session_is_closed_on_exit_and_on_error() -> None:
    with duck.session() as con:
        pass
    with pytest.raises(duckdb.ConnectionException):
        con.sql("SELECT 1")
    with pytest.raises(RuntimeError), duck.session(t=pa.table({"a": [1]})) as failing:
        raise RuntimeError("boom")
    with pytest.raises(duckdb.ConnectionException):
        failing.sql("SELECT 1")


def test_a_failing_query_raises_and_closes() -> None:
    with pytest.raises(duckdb.Error):
        duck.query("SELECT no_such_column FROM t", t=pa.table({"a": [1]}))
    assert duck.query("SELECT 2 AS two").to_pydict() == {"two": [2]}


def test_sessions_share_one_database_across_threads() -> None:
    results: list[list[int]] = []

    def work(n: int) -> None:
        t = pa.table({"a": list(range(n))})
        results.append(duck.query("SELECT count(*) AS n FROM t", t=t)["n"].to_pylist())

    threads = [threading.Thread(target=work, args=(n,)) for n in (1, 2, 3, 4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert sorted(results) == [[1], [2], [3], [4]]


def test_results_come_out_without_a_warning_even_where_warnings_are_errors() -> None:
    # DuckDB 2 warns when Arrow is taken from an executed statement; ``sql`` does that on
    # purpose (one bind instead of a relation's two) and must not let the warning out
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = duck.query("SELECT x * 2 AS y FROM t ORDER BY y", t=pa.table({"x": [2, 1]}))
        assert got.to_pydict() == {"y": [2, 4]}
        with duck.session() as con:
            con.execute("SELECT 'a' AS s UNION ALL SELECT 'b'")
            assert sorted(duck.fetch_arrow(con)["s"].to_pylist()) == ["a", "b"]


def test_fetches_from_several_threads_let_no_warning_out() -> None:
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for _ in range(30):
                assert (
                    duck.query("SELECT count(*) AS n FROM range($n)", {"n": n})["n"][0].as_py() == n
                )
        except BaseException as exc:
            errors.append(exc)

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        threads = [threading.Thread(target=work, args=(n,)) for n in (10, 20, 30, 40)]
        for th in threads:
            th.start()
        for th in threads:
            th.join()
    assert not errors, errors[:1]


def test_the_database_opened_in_the_background_is_the_one_queries_use() -> None:
    """``open_in_background`` creates the process's one database on a thread; a query asked
    for meanwhile waits for it rather than creating another, and once it is there nothing is
    started again. In a fresh interpreter, counting the databases DuckDB creates."""
    import json
    import subprocess
    import sys

    probe = (
        "import json, duckdb\n"
        "opened = []\n"
        "real = duckdb.connect\n"
        "def counting(*a, **k):\n"
        "    opened.append(1)\n"
        "    return real(*a, **k)\n"
        "duckdb.connect = counting\n"
        "from unbacked import duck\n"
        "thread = duck.open_in_background()\n"
        "first = duck.query('SELECT 42 AS x').to_pydict()\n"
        "thread.join()\n"
        "again = duck.open_in_background()\n"
        "print(json.dumps([len(opened), first, again is None, thread.daemon]))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, timeout=120, check=True
    )
    opened, first, none_again, daemon = json.loads(run.stdout.strip().splitlines()[-1])
    assert opened == 1
    assert first == {"x": [42]}
    assert none_again
    assert not daemon  # the interpreter waits for it at exit, never stops it inside DuckDB
