"""An INSERT of many rows in one statement, for the ack path's write.

SQLAlchemy sends an INSERT … RETURNING of several rows, in the parameters' order, as a statement per row on SQLite
(it trusts no order of SQLite's RETURNING), and each execution of a Core statement walks it for its cache key
before anything is sent. Here the statement for each row count is compiled by SQLAlchemy once, for the connection's
dialect, and sent as the driver's own SQL (``exec_driver_sql``: the engine's events and error handling still apply)
with the parameters put through each column's bind processor, as SQLAlchemy would. What it hands back is matched
to the rows by the columns returned, not by position, so no order of RETURNING is relied on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Insert, Table, bindparam, insert
from sqlalchemy.engine import Dialect

from storage.repositories.base import insert_or_nothing


class MultiRowInsert:
    """``INSERT INTO table (columns) VALUES (…), (…) [ON CONFLICT DO NOTHING] RETURNING returning``."""

    def __init__(
        self, table: Table, columns: Sequence[str], returning: Sequence[str], *, skip_conflicts: bool = False
    ) -> None:
        self._table = table
        self._columns = tuple(columns)
        self._returning = tuple(returning)
        self._skip_conflicts = skip_conflicts
        # (dialect, paramstyle, row count) → the SQL and, for each parameter in it, its row and column.
        self._compiled: dict[tuple[str, str, int], tuple[str, list[tuple[int, str]], bool]] = {}
        self._processors: dict[str, dict[str, Callable[[Any], Any] | None]] = {}

    def __call__(self, connection: Connection, rows: Sequence[Mapping[str, Any]]) -> list[tuple[Any, ...]]:
        """Insert ``rows`` (each with every column); the returned columns of each row inserted, in no set order."""
        if not rows:
            return []
        dialect = connection.dialect
        sql, slots, positional = self._statement(dialect, len(rows))
        processors = self._bind_processors(dialect)
        values = []
        for row_number, column in slots:
            value = rows[row_number][column]
            process = processors[column]
            values.append(value if process is None else process(value))
        if positional:
            parameters: Any = tuple(values)
        else:
            parameters = {
                f"r{row}_{column}": value for (row, column), value in zip(slots, values, strict=True)
            }
        return [tuple(row) for row in connection.exec_driver_sql(sql, parameters).all()]

    def _statement(self, dialect: Dialect, count: int) -> tuple[str, list[tuple[int, str]], bool]:
        key = (dialect.name, dialect.paramstyle, count)
        if key not in self._compiled:
            statement = self._insert(dialect.name).values(
                [{column: bindparam(f"r{row}_{column}") for column in self._columns} for row in range(count)]
            )
            statement = statement.returning(*(self._table.c[column] for column in self._returning))
            compiled = statement.compile(dialect=dialect)
            names = compiled.positiontup if compiled.positiontup is not None else list(compiled.binds)
            slots = []
            for name in names:
                row, _, column = name[1:].partition("_")
                slots.append((int(row), column))
            self._compiled[key] = (compiled.string, slots, compiled.positiontup is not None)
        return self._compiled[key]

    def _insert(self, dialect_name: str) -> Insert:
        return insert_or_nothing(self._table, dialect_name) if self._skip_conflicts else insert(self._table)

    def _bind_processors(self, dialect: Dialect) -> dict[str, Callable[[Any], Any] | None]:
        if dialect.name not in self._processors:
            # The dialect's own form of each type (SQLite's DATETIME, say, which writes its own text), as
            # SQLAlchemy binds it: the generic type's processor would leave that to the driver.
            self._processors[dialect.name] = {
                column: self._table.c[column].type.dialect_impl(dialect).bind_processor(dialect)
                for column in self._columns
            }
        return self._processors[dialect.name]
