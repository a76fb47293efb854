"""The async SQL engine: SQLite (WAL, via aiosqlite) on a fresh machine, PostgreSQL (asyncpg) at scale."""

from __future__ import annotations

import signal
import sqlite3
from pathlib import Path
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError
from sqlalchemy.ext.asyncio import AsyncEngine, async_sessionmaker, create_async_engine
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.audit import AuditedSession

EXAMPLES = "sqlite+aiosqlite:///path/to/aios.db or postgresql+asyncpg://user:password@host:5432/db"
# The execution option of the engine that read-only units of work use (see :func:`session_factory`).
READ_ONLY = "aios_read_only"


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
    return create_async_engine(url, pool_pre_ping=True)


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
    engine = create_async_engine(url, connect_args={"timeout": 30, "factory": _SignalDeafConnection})

    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Let SQLAlchemy issue BEGIN itself (below) instead of the driver's lazy, deferred one.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA busy_timeout=30000")
        cursor.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(connection: Any) -> None:
        if connection.get_execution_options().get(READ_ONLY):
            # A transaction that only reads needs no write lock: a deferred BEGIN reads one snapshot of the
            # store (WAL mode) while a writer goes on.
            connection.exec_driver_sql("BEGIN")
            return
        # A deferred transaction that reads and then writes can fail at once with SQLITE_BUSY when
        # another writer got there first; taking the write lock up front makes writers queue instead.
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine


def session_factory(engine: AsyncEngine, *, read_only: bool = False) -> async_sessionmaker[AsyncSession]:
    """Sessions on ``engine``; ``read_only``: for transactions that only read (SQLite begins them deferred,
    without the write lock; PostgreSQL begins them REPEATABLE READ READ ONLY, so that a write in one fails and
    its reads, however many, see one snapshot as they do on SQLite)."""
    if read_only:
        options: dict[str, Any] = {READ_ONLY: True, "postgresql_readonly": True}
        if engine.dialect.name == "postgresql":
            options["isolation_level"] = "REPEATABLE READ"
        engine = engine.execution_options(**options)
    # Every commit appends its audited writes to the audit chain, in the same transaction.
    return async_sessionmaker(
        engine, class_=AsyncSession, expire_on_commit=False, sync_session_class=AuditedSession
    )
