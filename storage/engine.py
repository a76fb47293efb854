"""The async SQL engine: SQLite (WAL, via aiosqlite) on a fresh machine, PostgreSQL (asyncpg) at scale."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import quote

import aiosqlite
from sqlalchemy import event, text
from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, DisconnectionError, InvalidatePoolError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlalchemy.pool import PoolResetState
from sqlalchemy.util import await_
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.audit import AuditedSession
from storage.sqlite_driver import OneTripConnection, OneTripDbapi

EXAMPLES = "sqlite+aiosqlite:///path/to/aios.db or postgresql+asyncpg://user:password@host:5432/db"
# The execution option of the engine that read-only units of work use (see :func:`session_factory`).
READ_ONLY = "aios_read_only"
# How long the event loop's thread may keep the GIL while a SQLite connection's thread waits for it.
SWITCH_INTERVAL_SECONDS = 0.0005
# A PostgreSQL connection given back to the pool at most this long ago is used without being checked first.
PING_AFTER_IDLE_SECONDS = 1.0
_LAST_USED = "aios_last_used"
# How long a SQLite statement waits for another connection's lock before it fails with "database is locked".
BUSY_TIMEOUT_SECONDS = 30.0
# A SQLite writer's BEGIN IMMEDIATE waits for the write lock in tries this long each on the connection's thread,
# with pauses on the event loop between them, doubling up to the longest.
BEGIN_TRY_MILLISECONDS = 5
FIRST_PAUSE_SECONDS = 0.001
LONGEST_PAUSE_SECONDS = 0.05


class _SignalDeafConnection(sqlite3.Connection):
    """A SQLite connection that leaves Ctrl-C and SIGTERM to the main thread.

    aiosqlite opens each connection in a thread of its own, and the kernel hands a process's signal to any of
    its threads that does not block it. A thread that takes one wakes nobody: a main thread waiting in a prompt
    (`aios chat`) would wait on, deaf to Ctrl-C. The connection is made in its thread, so it blocks them there.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
        super().__init__(*args, **kwargs)


class DatabaseUrlError(ValueError):
    """The database URL names a database this bot cannot use."""


def normalise_database_url(url: str) -> str:
    """Accept Heroku's ``postgres://`` and plain ``postgresql://``/``sqlite://`` and pick the async drivers."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url.removeprefix("postgres://")
    try:
        parsed = make_url(url)
    except (ArgumentError, ValueError):
        raise DatabaseUrlError(f"AIOS_DATABASE_URL {url!r} is not a database URL; use {EXAMPLES}") from None
    if parsed.drivername in ("postgresql", "postgresql+psycopg2", "postgresql+psycopg"):
        parsed = parsed.set(drivername="postgresql+asyncpg")
    elif parsed.drivername in ("sqlite", "sqlite+pysqlite"):
        parsed = parsed.set(drivername="sqlite+aiosqlite")
    if parsed.drivername not in ("postgresql+asyncpg", "sqlite+aiosqlite"):
        raise DatabaseUrlError(f"AIOS_DATABASE_URL uses {parsed.drivername!r}; use {EXAMPLES}")
    if parsed.drivername == "postgresql+asyncpg" and not parsed.database:
        raise DatabaseUrlError(
            f"AIOS_DATABASE_URL {parsed.render_as_string()!r} names no database; use {EXAMPLES}"
        )
    return parsed.render_as_string(hide_password=False)


def database_problem(exc: Exception) -> str:
    """One line for a database that cannot be reached or used, without the driver's traceback."""
    detail = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    reason = detail[0] if detail else type(exc).__name__
    return (
        f"cannot use the database ({reason}). Check AIOS_DATABASE_URL ({EXAMPLES}) "
        "and that the database is running and reachable."
    )


def create_engine(url: str) -> AsyncEngine:
    url = normalise_database_url(url)
    if url.startswith("sqlite"):
        return _create_sqlite_engine(url)
    return _create_postgres_engine(url)


def _create_postgres_engine(url: str) -> AsyncEngine:
    engine = create_async_engine(url)
    pool = engine.sync_engine.pool

    # A pooled connection is checked before use, so that one the server closed (a restart, an idle timeout) is
    # replaced rather than failing the work that took it; but the check (SQLAlchemy's pre-ping: BEGIN, a
    # statement, ROLLBACK) costs three round trips, as many as the write it precedes. A connection given back
    # moments ago is alive: only one that sat idle longer is checked.
    @event.listens_for(pool, "connect")
    @event.listens_for(pool, "checkin")
    def _note_use(_dbapi_connection: Any, record: Any) -> None:
        record.info[_LAST_USED] = time.monotonic()

    @event.listens_for(pool, "checkout")
    def _check_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        if dbapi_connection.driver_connection.is_closed():
            # The server ended the session (a restart, a failover, pg_terminate_backend) and asyncpg saw it go:
            # known without a round trip, however recently the connection was used.
            # This one only: a server may end one idle session (idle_session_timeout, a pooler) and not the rest.
            raise DisconnectionError("a pooled connection was closed by the server")
        if time.monotonic() - record.info.get(_LAST_USED, 0.0) <= PING_AFTER_IDLE_SECONDS:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            # As the pre-ping: connections opened before this one may be as dead, so the pool opens new ones.
            raise InvalidatePoolError(f"a pooled connection failed its check ({exc})") from exc

    return engine


def _create_sqlite_engine(url: str) -> AsyncEngine:
    database = make_url(url).database
    if database and database != ":memory:":
        folder = Path(database).parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise DatabaseUrlError(
                f"cannot create the folder {str(folder)!r} for the SQLite database in AIOS_DATABASE_URL "
                f"({exc.strerror or exc}); point it at a folder you can write to"
            ) from None
    # aiosqlite runs each statement in a thread of its own, which must take the GIL from the event loop's thread
    # before the statement starts and hand it back after: a busy loop gives it up only every switch interval
    # (5 ms by default), so under load every statement of a write (and the writer lock held meanwhile) waited that
    # long twice.
    sys.setswitchinterval(min(sys.getswitchinterval(), SWITCH_INTERVAL_SECONDS))
    # Each call to a connection is a trip to its thread and back through the event loop. A connection is given
    # back after its transaction ended (committed or rolled back) or with one left open (see _on_reset), so the
    # pool's blanket rollback on return would be one more trip per unit of work, for nothing. Each statement is
    # one trip, not four (see storage/sqlite_driver.py).
    engine = create_async_engine(
        url,
        module=OneTripDbapi(),
        # A transaction holding the write lock runs on the event loop's thread (storage/sqlite_driver.py), the rest
        # on the connection's own: never both at once, as each call waits for the one before it.
        connect_args={
            "timeout": BUSY_TIMEOUT_SECONDS,
            "factory": _SignalDeafConnection,
            "check_same_thread": False,
        },
        pool_reset_on_return=None,
    )

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy issue BEGIN itself (below) instead of the driver's lazy, deferred one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        # Only in WAL mode does a writer's COMMIT not wait for readers, so only there may a writer's calls run on
        # the event loop's thread (storage/sqlite_driver.py); an in-memory database stays in its own mode.
        dbapi_connection.in_wal = cursor.fetchone()[0] == "wal"
        if dbapi_connection.in_wal:
            # The driver checkpoints on the connection's thread every few dozen commits, rather than SQLite in
            # the COMMIT that crosses 1,000 pages, which would be on the event loop's thread.
            cursor.execute("PRAGMA wal_autocheckpoint=0")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA busy_timeout={int(BUSY_TIMEOUT_SECONDS * 1000)}")
        cursor.close()

    # SQLAlchemy picks the dialect's class by the URL's driver name, which stays the one people write: the
    # aiosqlite dialect made is given the BEGIN of _SQLiteDialect, which the "begin" event below tells whether the
    # transaction only reads.
    dialect = engine.sync_engine.dialect
    assert type(dialect) is SQLiteDialect_aiosqlite
    dialect.__class__ = _SQLiteDialect

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        dbapi_connection = connection.connection.dbapi_connection
        dbapi_connection.deferred_begin = bool(connection.get_execution_options().get(READ_ONLY))

    @event.listens_for(engine.sync_engine, "handle_error")
    def _on_error(context: ExceptionContext) -> None:
        # SQLAlchemy takes a cancellation that ends a DBAPI call for a lost connection, and closes it: a BEGIN's
        # wait cancelled is not one, as it left the connection out of a transaction (see _SQLiteDialect.do_begin).
        if context.connection is None or not context.is_disconnect:
            return
        dbapi_connection = context.connection.connection.dbapi_connection
        if (
            isinstance(dbapi_connection, OneTripConnection)
            and dbapi_connection.begin_cancelled is not None
            and dbapi_connection.begin_cancelled is context.original_exception
        ):
            dbapi_connection.begin_cancelled = None
            context.is_disconnect = False

    @event.listens_for(engine.sync_engine.pool, "reset")
    def _on_reset(dbapi_connection: Any, _record: Any, state: PoolResetState) -> None:
        # Given back with its transaction still open (a failed COMMIT, say): rolled back, as the pool would.
        if state.asyncio_safe and dbapi_connection.driver_connection.in_transaction:
            dbapi_connection.rollback()

    return engine


class _SQLiteDialect(SQLiteDialect_aiosqlite):
    """SQLAlchemy's aiosqlite dialect, whose BEGIN takes the write lock up front unless the transaction only reads.

    A deferred transaction that reads and then writes can fail at once with SQLITE_BUSY when another writer got
    there first; taking the write lock up front (BEGIN IMMEDIATE) makes writers queue instead. A transaction that
    only reads needs no write lock: a deferred BEGIN reads one snapshot of the store (WAL mode) while a writer
    goes on.

    Here, in the dialect's BEGIN, and not in the engine's "begin" event: a BEGIN that fails there leaves
    SQLAlchemy's connection believing it is still beginning, so that it never begins again and a Core user of it
    goes on in autocommit. A BEGIN that fails here raises from ``begin()`` with the connection out of a
    transaction, ready for the next.
    """

    # Its statements compile as its parent's do, so they are cached as theirs are.
    supports_statement_cache = True

    def do_begin(self, dbapi_connection: Any) -> None:
        connection: OneTripConnection = dbapi_connection.dbapi_connection
        try:
            if connection.deferred_begin:
                if (locked := connection.try_begin("BEGIN")) is not None:
                    raise locked
                return
            _begin_immediate(connection)
        except asyncio.CancelledError as cancelled:
            # Whether it landed while a try ran (rolled back after it, on the connection's thread) or in a pause:
            # the connection is left out of a transaction, and is no lost connection (see _on_error).
            connection.begin_cancelled = cancelled
            raise

    def do_rollback(self, dbapi_connection: Any) -> None:
        # SQLAlchemy rolls back after any failure outside a transaction, a failed BEGIN's too: where none is open
        # that is a trip to the connection's thread for nothing.
        try:
            open_transaction = dbapi_connection.driver_connection.in_transaction
        except ValueError:  # aiosqlite's "no active connection": the rollback says so, as SQLAlchemy expects
            open_transaction = True
        if open_transaction:
            super().do_rollback(dbapi_connection)  # type: ignore[no-untyped-call]


def _begin_immediate(connection: OneTripConnection) -> None:
    """BEGIN IMMEDIATE, waiting up to BUSY_TIMEOUT_SECONDS for a write lock another process holds.

    Not in one statement waiting all that time in SQLite's busy handler, on the connection's thread: a unit of work
    cancelled meanwhile (a connector's time limit, a shutdown) waited until the lock came or the wait ran out, as
    nothing sent to the connection's thread runs before that statement ends. Short tries instead, with the pauses
    between them awaited on the event loop, where a cancellation lands at once. A try that finds the database
    locked costs a BEGIN on the event loop's thread that does not wait, then one trip to the connection's thread.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT_SECONDS
    pause = FIRST_PAUSE_SECONDS
    while True:
        locked = connection.try_begin("BEGIN IMMEDIATE", BEGIN_TRY_MILLISECONDS)
        if locked is None:
            return
        left = deadline - time.monotonic()
        if left <= 0:
            told = sqlite3.OperationalError(
                f"{locked} (BEGIN IMMEDIATE waited {BUSY_TIMEOUT_SECONDS:g} s for another connection's write lock)"
            )
            told.sqlite_errorcode = locked.sqlite_errorcode
            told.sqlite_errorname = locked.sqlite_errorname
            raise told from locked
        await_(asyncio.sleep(min(pause, left)))
        pause = min(pause * 2, LONGEST_PAUSE_SECONDS)


def read_only_engine(engine: AsyncEngine) -> AsyncEngine:
    """``engine`` for transactions that only read: SQLite begins them deferred, without the write lock (so they
    neither wait for a writer nor make one wait); PostgreSQL begins them REPEATABLE READ READ ONLY."""
    options: dict[str, Any] = {READ_ONLY: True, "postgresql_readonly": True}
    if engine.dialect.name == "postgresql":
        options["isolation_level"] = "REPEATABLE READ"
    return engine.execution_options(**options)


# One row of a real table: the schema's version, which every migrated store holds.
_HEALTH_READ = "SELECT version_num FROM alembic_version LIMIT 1"
# A health check answers within this even while SQLite's file is locked (its recovery after a crash, say).
HEALTH_TIMEOUT_SECONDS = 2.0


def store_reader(engine: AsyncEngine) -> Callable[[], Awaitable[str]]:
    """A health check's read of one row of a table of the store; it returns the schema's version.

    On SQLite through a new read-only connection to the file, not a pooled one: those keep the file open and
    their page cache from earlier reads, and answer on for a file deleted, truncated or overwritten since (and
    the file is not made anew, empty, where one was deleted). It takes no lock, so neither waits for a writer nor
    makes one wait. Its path is made absolute here, once, as SQLAlchemy makes it when the engine is made, and
    given an empty authority (file://) so that a path beginning with // is not read as a host. On PostgreSQL
    through the pool, read-only."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        pooled = read_only_engine(engine)

        async def read_pooled() -> str:
            async with pooled.connect() as connection:
                return str((await connection.execute(text(_HEALTH_READ))).scalar_one())

        return read_pooled
    uri = f"file://{quote(os.path.abspath(database))}?mode=ro"

    async def read_file() -> str:
        reading = aiosqlite.connect(
            uri, uri=True, timeout=HEALTH_TIMEOUT_SECONDS, factory=_SignalDeafConnection
        )
        async with reading as reader, reader.execute(_HEALTH_READ) as cursor:
            row = await cursor.fetchone()
        if row is None:
            raise LookupError("the store holds no schema version")
        return str(row[0])

    return read_file


def session_factory(engine: AsyncEngine, *, read_only: bool = False) -> async_sessionmaker[AsyncSession]:
    """Sessions on ``engine``; ``read_only``: for transactions that only read (SQLite begins them deferred,
    without the write lock; PostgreSQL begins them REPEATABLE READ READ ONLY, so that a write in one fails and
    its reads, however many, see one snapshot as they do on SQLite)."""
    if read_only:
        engine = read_only_engine(engine)
    # Every commit appends its audited writes to the audit chain, in the same transaction.
    return async_sessionmaker(
        engine, class_=AsyncSession, expire_on_commit=False, sync_session_class=AuditedSession
    )
