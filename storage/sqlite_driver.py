"""SQLAlchemy's aiosqlite adapter, with each statement one trip to the connection's thread.

aiosqlite runs a SQLite connection in a thread of its own: every call to it is queued to that thread, which wakes,
runs it and hands the result back through the event loop. SQLAlchemy's adapter makes four such calls for each
statement (open a cursor, execute, fetch the rows, close the cursor), and a gated action sends dozens of statements
while it holds SQLite's writer lock. Here the four are one call, run on the connection's thread; the rows, the
description, rowcount and lastrowid come back together, as SQLAlchemy's adapter buffers them anyway.

This leans on private names, pinned by tests/integration/test_sqlite_driver.py: aiosqlite's ``Connection._execute``
(queue a function to the connection's thread; aiosqlite's own calls all go through it) and ``Connection._conn``;
SQLAlchemy's ``_async_soft_close`` (which its async results call on the adapter's cursor), the adapter's
``_handle_exception`` (its mapping of aiosqlite's errors) and the base cursor's ``_rows`` buffer, read by its fetches.

Once a connection holds SQLite's write lock (its BEGIN IMMEDIATE went through), its statements, COMMIT and ROLLBACK
run on the event loop's own thread, not on the connection's: no statement of that transaction can wait for another
connection's lock (WAL: the writer holds the only lock a writer needs, and readers take none), so each takes the
microseconds SQLite needs for it, where a trip to the thread and back costs more than that in wake-ups alone — and
the write lock is held for less time. A BEGIN is tried there first too, without waiting; one that must wait for
another connection's lock, and the reads of a transaction that only reads (a digest's aggregate may take a while),
go to the connection's thread, where they leave the event loop free meanwhile.
"""

from __future__ import annotations

import asyncio
import collections
import sqlite3
from collections.abc import Callable
from typing import Any, NamedTuple, TypeVar, cast

import aiosqlite
from sqlalchemy.connectors.asyncio import AsyncAdapt_dbapi_cursor
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.util import await_

Result = TypeVar("Result")


class _Outcome(NamedTuple):
    description: Any
    rows: list[Any]
    rowcount: int
    lastrowid: int | None


def _run(connection: sqlite3.Connection, operation: str, parameters: Any, many: bool) -> _Outcome:
    cursor = connection.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else []
        # Read after the rows: SQLite counts the rows an UPDATE … RETURNING changed as they are fetched.
        return _Outcome(description, rows, cursor.rowcount, cursor.lastrowid)
    finally:
        cursor.close()


def _begin_once(
    connection: sqlite3.Connection, statement: str, busy_timeout_ms: int | None
) -> sqlite3.OperationalError | None:
    """One try of ``statement`` (a BEGIN), waiting at most ``busy_timeout_ms`` (if given) for another connection's
    lock; a try that found the database locked is returned, not raised, as the caller may try again."""
    kept = None
    try:
        if busy_timeout_ms is not None:
            (kept,) = connection.execute("PRAGMA busy_timeout").fetchone()
            connection.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        connection.execute(statement)
    except sqlite3.OperationalError as error:
        if error.sqlite_errorcode & 0xFF == sqlite3.SQLITE_BUSY:
            return error
        raise
    finally:
        if kept is not None:
            connection.execute(f"PRAGMA busy_timeout = {int(kept)}")
    return None


def _end_begun(connection: sqlite3.Connection) -> None:
    if connection.in_transaction:
        connection.rollback()


class OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A client-side cursor whose statement, with its rows, is one call: on the connection's thread, or on the event
    loop's while the transaction holds the write lock."""

    __slots__ = ("_arraysize", "_description", "_lastrowid", "_rowcount")

    def __init__(self, adapt_connection: OneTripConnection) -> None:
        # No driver cursor is opened here: each statement opens and closes its own on the thread.
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection.driver_connection
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: int | None = None
        self._arraysize = 1

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> Any:
        return self._lastrowid

    @property
    def arraysize(self) -> int:
        return self._arraysize

    @arraysize.setter
    def arraysize(self, value: int) -> None:
        self._arraysize = value

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        self._send(operation, parameters, many=False)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        self._send(operation, seq_of_parameters, many=True)

    def _send(self, operation: str, parameters: Any, *, many: bool) -> None:
        driver: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        adapted = cast(OneTripConnection, self._adapt_connection)
        try:
            # driver._conn raises "no active connection" once closed, as aiosqlite's own calls do.
            if adapted.writing:
                outcome = await_(_at_once(_run, driver._conn, operation, parameters, many))
            else:
                outcome = await_(
                    driver._execute(_run, driver._conn, operation, parameters, many)  # type: ignore[no-untyped-call]
                )
        except Exception as error:
            adapted.writing = adapted.writing and _in_transaction(driver)
            adapted._handle_exception(error)
        adapted.writing = adapted.writing and _in_transaction(driver)
        self._description = outcome.description
        self._rows = collections.deque(outcome.rows)
        self._rowcount = outcome.rowcount
        self._lastrowid = outcome.lastrowid

    async def _async_soft_close(self) -> None:
        # Nothing is open on the connection's thread: the rows are here already.
        return None

    def close(self) -> None:
        self._rows.clear()


class OneTripConnection(AsyncAdapt_aiosqlite_connection):
    __slots__ = ("begin_cancelled", "deferred_begin", "writing")

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        # Whether the transaction being begun only reads (set by the engine's "begin" event, read by the dialect).
        self.deferred_begin = False
        # A cancellation that ended a BEGIN with the connection left as it was (see storage.engine).
        self.begin_cancelled: BaseException | None = None
        # Holding SQLite's write lock: what the transaction sends runs on the event loop's thread (see above).
        self.writing = False

    def commit(self) -> None:
        if self.writing:
            self._end_here(sqlite3.Connection.commit)
        else:
            super().commit()

    def rollback(self) -> None:
        if self.writing:
            self._end_here(sqlite3.Connection.rollback)
        else:
            super().rollback()

    def _end_here(self, end: Callable[[sqlite3.Connection], None]) -> None:
        driver = cast(aiosqlite.Connection, self._connection)
        try:
            await_(_at_once(end, driver._conn))
        except Exception as error:
            self._handle_exception(error)
        finally:
            self.writing = _in_transaction(driver)

    def try_begin(
        self, statement: str, busy_timeout_ms: int | None = None
    ) -> sqlite3.OperationalError | None:
        """One try of ``statement`` (a BEGIN) on the connection's thread, in one trip; the error of a try that
        found the database locked is returned. A cancellation of the wait for it leaves the connection out of a
        transaction: the try goes on on the connection's thread, and what it began is rolled back there after it,
        before anything sent later."""
        driver: aiosqlite.Connection = self._connection  # type: ignore[assignment]
        try:
            # Here first, not waiting: a lock that is free is taken without a trip to the connection's thread.
            locked = await_(_at_once(_begin_once, driver._conn, statement, 0))
            if locked is not None:
                locked = cast(
                    sqlite3.OperationalError | None,
                    await_(driver._execute(_begin_once, driver._conn, statement, busy_timeout_ms)),  # type: ignore[no-untyped-call]
                )
            self.writing = locked is None and _takes_write_lock(statement)
            return locked
        except asyncio.CancelledError:
            # Queued as the call starts, so even a second cancellation of this wait leaves it queued.
            await_(driver._execute(_end_begun, driver._conn))  # type: ignore[no-untyped-call]
            raise
        except Exception as error:
            self._handle_exception(error)

    def cursor(self, server_side: bool = False) -> AsyncAdapt_dbapi_cursor:
        if server_side:
            return super().cursor(server_side=True)
        return OneTripCursor(self)


async def _at_once(function: Callable[..., Result], *args: Any) -> Result:
    """``function`` called on the event loop's thread, as something to await: SQLAlchemy's AsyncConnection insists
    that a statement's driver awaited something, and this is awaited without a turn of the event loop."""
    return function(*args)


def _takes_write_lock(statement: str) -> bool:
    return statement.lstrip()[:15].upper() in ("BEGIN IMMEDIATE", "BEGIN EXCLUSIVE")


def _in_transaction(driver: aiosqlite.Connection) -> bool:
    """Whether the connection is in a transaction; not, once it is closed."""
    try:
        return driver._conn.in_transaction
    except ValueError:  # aiosqlite's "no active connection"
        return False


class OneTripDbapi(AsyncAdapt_aiosqlite_dbapi):
    """aiosqlite as SQLAlchemy's aiosqlite dialect sees it, with :class:`OneTripConnection` for connections."""

    def __init__(self) -> None:
        super().__init__(aiosqlite, sqlite3)

    def connect(self, *arg: Any, **kw: Any) -> OneTripConnection:
        adapted = super().connect(*arg, **kw)
        return OneTripConnection(self, adapted.driver_connection)
