"""The one way a value is written into SQL text: ``sql_str`` quotes a string literal.

Everything that comes from data or from files users load (baseline settings, counts) goes into
queries as parameters (``$name``: ``duck.sql(con, query, params)``), never as text; ``sql_str``
is for the code's own constants (feature names, JSON paths).
"""

from __future__ import annotations


def sql_str(value: str) -> str:
    """A SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def sql_ident(name: str) -> str:
    """A quoted SQL identifier (a column name read from a file)."""
    return '"' + name.replace('"', '""') + '"'
