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
import functools
import sqlite3
import time
from collections.abc import Awaitable, Callable, Coroutine
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

# The longest the event loop goes without a turn while a writer's calls run on its thread (see _LoopTurns).
LOOP_HELD_SECONDS = 0.005
# A writer's connection checkpoints the WAL after this many commits (see OneTripConnection._checkpoint_later):
# SQLite's own automatic one runs every 1,000 pages, a few dozen of this bot's transactions.
CHECKPOINT_EVERY_COMMITS = 50


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
        adapted = cast(OneTripConnection, self._adapt_connection)
        try:
            if adapted.writing and adapted.free_here():
                outcome = await_(adapted.here(_run, operation, parameters, many))
            else:
                outcome = adapted.on_thread(_run, operation, parameters, many)
        except Exception as error:
            adapted.ended_or_not()
            adapted._handle_exception(error)
        adapted.ended_or_not()
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
    __slots__ = ("begin_cancelled", "commits", "deferred_begin", "done", "in_wal", "sent", "writing")

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        # Whether the transaction being begun only reads (set by the engine's "begin" event, read by the dialect).
        self.deferred_begin = False
        # A cancellation that ended a BEGIN with the connection left as it was (see storage.engine).
        self.begin_cancelled: BaseException | None = None
        # In WAL mode (set when the connection is made): only there does no statement of a writer wait for others.
        self.in_wal = False
        # Holding SQLite's write lock: what the transaction sends runs on the event loop's thread (see above).
        self.writing = False
        # Calls handed to the connection's thread (counted on the event loop's) and of them those ended (counted
        # on the connection's): each counter moves in one thread only.
        self.sent = 0
        self.done = 0
        self.commits = 0  # committed on the event loop's thread, for the checkpoints (see _end_here)

    def free_here(self) -> bool:
        """Whether a call may run on the event loop's thread now: in WAL mode, with nothing handed to the
        connection's thread still to run there (a BEGIN's try whose wait was cancelled, its rollback, a
        checkpoint), which would then run beside it or, later, undo what it did."""
        return self.in_wal and self.sent == self.done

    async def here(self, function: Callable[..., Result], *args: Any) -> Result:
        """``function(connection, *args)`` on the event loop's thread, as something to await (SQLAlchemy's
        AsyncConnection insists that a statement's driver awaited something), awaited without a turn of the loop
        unless the loop has not had one for a while (see _LoopTurns)."""
        await _TURNS.let_the_loop_turn()
        return function(self._driver()._conn, *args)

    def on_thread(self, function: Callable[..., Result], *args: Any) -> Result:
        """``function(connection, *args)`` on the connection's thread, in one trip."""
        return await_(self._queued(function, *args))

    def _queued(self, function: Callable[..., Result], *args: Any) -> Coroutine[Any, Any, Result]:
        """``function(connection, *args)`` queued to the connection's thread as the coroutine returned starts,
        counted until it has run there."""
        driver = self._driver()
        connection = driver._conn  # raises "no active connection" once closed, as aiosqlite's own calls do

        @functools.wraps(function)  # named as the function it runs (the trip counts in tests read it)
        def counted() -> Result:
            try:
                return function(connection, *args)
            finally:
                self.done += 1

        self.sent += 1
        return self._sent_to_thread(driver._execute(counted))  # type: ignore[no-untyped-call]

    async def _sent_to_thread(self, call: Awaitable[Result]) -> Result:
        try:
            return await call
        except ValueError as error:
            if str(error) == "Connection closed":  # refused before it was queued: it will never run
                self.sent -= 1
            raise

    def ended_or_not(self) -> None:
        """After a call: whether the connection still holds the write lock."""
        self.writing = self.writing and _in_transaction(self._driver())

    def _driver(self) -> aiosqlite.Connection:
        return cast(aiosqlite.Connection, self._connection)

    def commit(self) -> None:
        if self.writing and self.free_here():
            self._end_here(sqlite3.Connection.commit)
            self.commits += 1
            if self.commits % CHECKPOINT_EVERY_COMMITS == 0:
                self._checkpoint_later()
        else:
            super().commit()
            self.ended_or_not()

    def rollback(self) -> None:
        if self.writing and self.free_here():
            self._end_here(sqlite3.Connection.rollback)
        else:
            super().rollback()
            self.ended_or_not()

    def _end_here(self, end: Callable[[sqlite3.Connection], None]) -> None:
        try:
            await_(self.here(end))
        except Exception as error:
            self._handle_exception(error)
        finally:
            self.ended_or_not()

    def _checkpoint_later(self) -> None:
        """Copy the WAL back into the database file on the connection's thread, not waiting for anyone (PASSIVE):
        SQLite's own automatic checkpoint (off on these connections, see storage.engine) would run in the COMMIT
        that crosses its threshold, on the event loop's thread, with its fsyncs."""
        try:
            checkpoint = self._queued(_checkpoint)
        except ValueError:  # closed meanwhile
            return
        task = asyncio.get_running_loop().create_task(checkpoint, name="sqlite_checkpoint")
        _CHECKPOINTS.add(task)
        task.add_done_callback(_checkpoint_ended)

    def try_begin(
        self, statement: str, busy_timeout_ms: int | None = None
    ) -> sqlite3.OperationalError | None:
        """One try of ``statement`` (a BEGIN): on the event loop's thread without waiting when nothing is in the
        way, else on the connection's thread, in one trip, waiting at most ``busy_timeout_ms`` for another
        connection's lock; the error of a try that found the database locked is returned. A cancellation of the
        wait for it leaves the connection out of a transaction: the try goes on on the connection's thread, and
        what it began is rolled back there after it, before anything sent later."""
        try:
            locked: sqlite3.OperationalError | None = sqlite3.OperationalError("not tried")
            if self.free_here():
                locked = await_(self.here(_begin_once, statement, 0))
            if locked is not None:
                locked = self.on_thread(_begin_once, statement, busy_timeout_ms)
            self.writing = locked is None and _takes_write_lock(statement)
            return locked
        except asyncio.CancelledError:
            # Queued as the call starts, so even a second cancellation of this wait leaves it queued; counted,
            # so that nothing runs on the event loop's thread before it has run.
            self.on_thread(_end_begun)
            raise
        except Exception as error:
            self._handle_exception(error)

    def cursor(self, server_side: bool = False) -> AsyncAdapt_dbapi_cursor:
        if server_side:
            return super().cursor(server_side=True)
        return OneTripCursor(self)


class _LoopTurns:
    """Calls run on the event loop's thread (above) are awaited without a turn of the loop, so a transaction of
    nothing but statements would hold the loop from its BEGIN to its COMMIT: a bulk write (memories expired by the
    thousand, a take-over) for a second. Once the loop has not turned for LOOP_HELD_SECONDS, the next such call
    lets it turn first."""

    def __init__(self) -> None:
        self._held_since: float | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    async def let_the_loop_turn(self) -> None:
        now = time.perf_counter()
        loop = asyncio.get_running_loop()
        if self._held_since is None or self._loop is not loop:
            self._held_since, self._loop = now, loop
            loop.call_soon(self._turned)  # runs at the loop's next turn, whoever makes it
        elif now - self._held_since > LOOP_HELD_SECONDS:
            await asyncio.sleep(0)
            self._held_since = None

    def _turned(self) -> None:
        self._held_since = None


_TURNS = _LoopTurns()
# Checkpoints under way, kept from the garbage collector until they end.
_CHECKPOINTS: set[asyncio.Task[None]] = set()


def _checkpoint(connection: sqlite3.Connection) -> None:
    connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()


def _checkpoint_ended(task: asyncio.Task[None]) -> None:
    _CHECKPOINTS.discard(task)
    if not task.cancelled() and (error := task.exception()) is not None:
        # The connection closed meanwhile, say: the next checkpoint copies what this one would have. (structlog is
        # imported here: the CLI's light commands, which open a store, do without it.)
        import structlog

        structlog.get_logger(__name__).info("sqlite_checkpoint_skipped", error=str(error))


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
