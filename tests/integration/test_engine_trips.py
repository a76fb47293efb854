"""What a unit of work costs beyond its own statements: on SQLite, trips to the connection's thread (each one a
turn of the event loop); on PostgreSQL, round trips to check a pooled connection before use."""

from __future__ import annotations

import asyncio
import sqlite3
import sys
import time
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from runtime.intake import IncomingIntent, IntentInbox
from storage import engine as engine_module
from storage.engine import BUSY_TIMEOUT_SECONDS, SWITCH_INTERVAL_SECONDS, create_engine
from storage.unit_of_work import UnitOfWorkFactory
from tests.integration.test_sqlite_driver import trips_to_sqlite

INTENT = IncomingIntent(source="slash", team_id="T1", channel="C1", thread_ts=None, user="U1", text="hi")


def checks_sent(engine: AsyncEngine) -> list[str]:
    """The pool's connection checks (the empty statement `;`) sent on PostgreSQL connections opened from now on."""
    checks: list[str] = []

    def on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.driver_connection.add_query_logger(
            lambda record: checks.append(record.query) if record.query.strip() == ";" else None
        )

    event.listen(engine.sync_engine.pool, "connect", on_connect)
    return checks


async def backend_pid(engine: AsyncEngine) -> int:
    """The PostgreSQL session of the connection the pool hands out next."""
    async with engine.connect() as connection:
        pid: int = (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
        return pid


async def ended_by_the_server(engine: AsyncEngine, pid: int) -> None:
    other = create_engine(str(engine.url.render_as_string(hide_password=False)))
    try:
        async with other.connect() as killer:
            await killer.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
    finally:
        await other.dispose()
    await asyncio.sleep(0.2)  # the server ends the session a moment after it is told to


async def test_an_intent_is_stored_without_a_trip_to_the_sqlite_thread(
    engine: AsyncEngine, units: UnitOfWorkFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("PostgreSQL's driver runs on the event loop")
    inbox = IntentInbox(units, owner=None)
    await inbox.accept(INTENT)  # the pool's connection is open
    trips = trips_to_sqlite(monkeypatch)
    assert await inbox.accept(INTENT) is not None
    # BEGIN IMMEDIATE takes the free write lock on the event loop's thread, where the INSERT and the COMMIT then
    # run; no rollback is sent as the connection goes back to the pool.
    assert trips == [], trips


async def test_a_sqlite_connection_given_back_inside_a_transaction_is_rolled_back(
    engine: AsyncEngine,
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("the pool's own rollback on return is left out on SQLite only")
    async with engine.connect() as connection:
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert driver is not None
        await driver.execute("BEGIN IMMEDIATE")  # behind SQLAlchemy's back: the write lock, held
        await driver.execute("INSERT INTO once (key, created_at) VALUES ('left open', '2026-01-01')")
        assert driver.in_transaction
    other = create_engine(str(engine.url))
    try:
        async with asyncio.timeout(10), other.begin() as writer:  # waits for ever if the lock were still held
            left = await writer.execute(text("SELECT count(*) FROM once WHERE key = 'left open'"))
            assert left.scalar_one() == 0
    finally:
        await other.dispose()


def test_a_sqlite_store_keeps_the_gil_from_being_held_long_by_a_busy_loop() -> None:
    before = sys.getswitchinterval()
    try:
        sys.setswitchinterval(0.005)  # Python's default
        create_engine("sqlite+aiosqlite:///:memory:")
        assert sys.getswitchinterval() <= SWITCH_INTERVAL_SECONDS
    finally:
        sys.setswitchinterval(before)


async def test_a_postgresql_connection_used_moments_ago_is_not_checked_again(
    engine: AsyncEngine, units: UnitOfWorkFactory
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite connections are not checked")
    await engine.dispose()
    checks = checks_sent(engine)
    inbox = IntentInbox(units, owner=None)
    for _ in range(5):
        assert await inbox.accept(INTENT) is not None
    assert checks == []


async def test_a_postgresql_connection_idle_for_a_while_is_checked_and_replaced_when_closed(
    engine: AsyncEngine, units: UnitOfWorkFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite connections are not checked")
    inbox = IntentInbox(units, owner=None)
    assert await inbox.accept(INTENT) is not None
    pooled = await backend_pid(engine)
    await ended_by_the_server(engine, pooled)
    monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_SECONDS", 0.0)  # every pooled connection is idle now
    checks = checks_sent(engine)
    assert await inbox.accept(INTENT) is not None  # on a new connection, not a failure
    assert await backend_pid(engine) != pooled
    assert checks  # the new connection, once idle, is checked too


def another_process_writing(engine: AsyncEngine) -> sqlite3.Connection:
    """A connection of its own, as another process's, holding SQLite's write lock until it rolls back."""
    database = engine.url.database
    assert database is not None
    other = sqlite3.connect(database, isolation_level=None, timeout=0)
    other.execute("BEGIN IMMEDIATE")
    return other


async def test_a_unit_cancelled_while_its_begin_waits_for_another_process_ends_at_once(
    engine: AsyncEngine, units: UnitOfWorkFactory
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's BEGIN IMMEDIATE waits for another process's write lock")
    other = another_process_writing(engine)
    try:
        started = time.monotonic()
        with pytest.raises(TimeoutError):
            async with (
                asyncio.timeout(0.3),
                units() as uow,
            ):  # as a connector's time limit cancels a unit of work
                await uow.session.exec(
                    text("INSERT INTO once (key, created_at) VALUES ('late', '2026-01-01')")
                )  # type: ignore[call-overload]
                await uow.commit()
        # Not once the other process lets go of the lock (or the busy timeout ran out) but as it was cancelled.
        assert time.monotonic() - started < 1.0
    finally:
        other.execute("ROLLBACK")
        other.close()
    other = another_process_writing(
        engine
    )  # so the write lock was not held by a connection of the pool either
    other.execute("ROLLBACK")
    other.close()
    async with units() as uow:  # and the pool's connection is as good as new, its busy timeout as it was
        await uow.session.exec(text("INSERT INTO once (key, created_at) VALUES ('next', '2026-01-01')"))  # type: ignore[call-overload]
        waiting = await uow.session.exec(text("PRAGMA busy_timeout"))  # type: ignore[call-overload]
        assert waiting.scalar_one() == BUSY_TIMEOUT_SECONDS * 1000
        await uow.commit()


async def test_a_writer_begins_moments_after_another_process_lets_go_of_the_write_lock(
    engine: AsyncEngine, units: UnitOfWorkFactory
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's BEGIN IMMEDIATE waits for another process's write lock")
    other = another_process_writing(engine)
    released = asyncio.get_running_loop().create_future()

    def release() -> None:
        other.execute("ROLLBACK")
        released.set_result(time.monotonic())

    asyncio.get_running_loop().call_later(0.5, release)
    try:
        async with units() as uow:
            await uow.session.exec(text("INSERT INTO once (key, created_at) VALUES ('waited', '2026-01-01')"))  # type: ignore[call-overload]
            await uow.commit()
        begun = time.monotonic()
    finally:
        other.close()
    assert begun - await released < 0.5  # the pauses between tries are short


async def test_a_writer_that_never_gets_the_write_lock_is_told_the_database_is_locked(
    engine: AsyncEngine, units: UnitOfWorkFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's BEGIN IMMEDIATE waits for another process's write lock")
    monkeypatch.setattr(engine_module, "BUSY_TIMEOUT_SECONDS", 0.5)
    other = another_process_writing(engine)
    try:
        started = time.monotonic()
        with pytest.raises(OperationalError, match=r"database is locked[\s\S]*BEGIN IMMEDIATE"):
            async with units() as uow:
                await uow.session.exec(text("INSERT INTO once (key, created_at) VALUES ('no', '2026-01-01')"))  # type: ignore[call-overload]
        assert 0.5 <= time.monotonic() - started < 2.0
    finally:
        other.execute("ROLLBACK")
        other.close()


async def test_a_connection_whose_begin_found_the_database_locked_begins_its_next_transaction(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's BEGIN IMMEDIATE waits for another process's write lock")
    monkeypatch.setattr(engine_module, "BUSY_TIMEOUT_SECONDS", 0.1)
    other = another_process_writing(engine)
    try:
        async with engine.connect() as connection:
            with pytest.raises(OperationalError, match="database is locked"):
                await connection.begin()
            assert not connection.in_transaction()
            other.execute("ROLLBACK")
            await connection.execute(
                text("INSERT INTO once (key, created_at) VALUES ('undone', '2026-01-01')")
            )
            # In a transaction begun as any other, not each statement committed as it ran.
            assert connection.in_transaction()
            await connection.rollback()
    finally:
        other.close()
    async with engine.connect() as connection:
        left = await connection.execute(text("SELECT count(*) FROM once WHERE key = 'undone'"))
        assert left.scalar_one() == 0


async def test_each_try_of_a_writer_waiting_for_the_write_lock_is_one_trip_to_the_sqlite_thread(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's BEGIN IMMEDIATE waits for another process's write lock")
    monkeypatch.setattr(engine_module, "BUSY_TIMEOUT_SECONDS", 0.2)
    async with engine.connect() as connection:
        await connection.get_raw_connection()  # opened
        other = another_process_writing(engine)
        try:
            trips = trips_to_sqlite(monkeypatch)
            with pytest.raises(OperationalError, match="database is locked"):
                await connection.begin()
        finally:
            other.execute("ROLLBACK")
            other.close()
        # No rollback after each try that found the database locked, nor after the last: none was begun.
        assert len(trips) > 3
        assert set(trips) == {"_begin_once"}, trips


@pytest.mark.parametrize(
    ("try_milliseconds", "pause_seconds", "cancellations"),
    [(2000, 0.001, 1), (2000, 0.001, 2), (1, 10.0, 1)],
    ids=[
        "while-a-try-waits-on-the-connection-thread",
        "again-while-that-try-ends",
        "in-a-pause-between-tries",
    ],
)
async def test_a_begin_cancelled_leaves_its_connection_open_and_out_of_a_transaction(
    engine: AsyncEngine,
    monkeypatch: pytest.MonkeyPatch,
    try_milliseconds: int,
    pause_seconds: float,
    cancellations: int,
) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's BEGIN IMMEDIATE waits for another process's write lock")
    monkeypatch.setattr(engine_module, "BEGIN_TRY_MILLISECONDS", try_milliseconds)
    monkeypatch.setattr(engine_module, "FIRST_PAUSE_SECONDS", pause_seconds)
    monkeypatch.setattr(engine_module, "LONGEST_PAUSE_SECONDS", pause_seconds)
    invalidated: list[BaseException | None] = []
    event.listen(
        engine.sync_engine.pool, "invalidate", lambda _dbapi, _record, error: invalidated.append(error)
    )
    database = engine.url.database
    assert database is not None
    async with engine.connect() as connection:
        opened = (await connection.get_raw_connection()).driver_connection
        other = another_process_writing(engine)
        released = asyncio.get_running_loop().create_future()

        def release() -> None:
            other.execute("ROLLBACK")
            released.set_result(None)

        # After the cancellation: a try still waiting on the connection's thread then takes the lock.
        asyncio.get_running_loop().call_later(0.3, release)
        try:
            started = time.monotonic()
            beginning = asyncio.ensure_future(connection.begin())
            await asyncio.sleep(0.2)
            for _ in range(cancellations):  # as a time limit, then a shutdown, would
                beginning.cancel()
                await asyncio.sleep(0.01)
            with pytest.raises(asyncio.CancelledError):
                await beginning
            assert time.monotonic() - started < 1.0  # at most the try under way is waited for
        finally:
            await released
            other.close()
        # Not taken for a lost connection, closed and opened anew.
        assert invalidated == []
        assert (await connection.get_raw_connection()).driver_connection is opened
        assert not connection.in_transaction()
        # What that try began was rolled back on the connection's thread right after it: the lock is free for
        # another process, and the connection begins its next transaction.
        after = sqlite3.connect(database, isolation_level=None, timeout=2)
        try:
            after.execute("BEGIN IMMEDIATE")
            after.execute("ROLLBACK")
        finally:
            after.close()
        async with connection.begin():
            await connection.execute(text("INSERT INTO once (key, created_at) VALUES ('next', '2026-01-01')"))
            waiting = await connection.execute(text("PRAGMA busy_timeout"))
            assert waiting.scalar_one() == BUSY_TIMEOUT_SECONDS * 1000
    async with engine.connect() as connection:
        stored = await connection.execute(text("SELECT count(*) FROM once WHERE key = 'next'"))
        assert stored.scalar_one() == 1


async def test_a_postgresql_connection_the_server_ended_moments_ago_is_replaced_without_failing_the_work(
    engine: AsyncEngine, units: UnitOfWorkFactory
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite connections are not checked")
    inbox = IntentInbox(units, owner=None)
    assert await inbox.accept(INTENT) is not None
    pooled = await backend_pid(engine)
    await ended_by_the_server(engine, pooled)  # a restart, a failover, an operator: moments after its use
    assert await inbox.accept(INTENT) is not None


async def test_one_postgresql_session_ended_by_the_server_replaces_that_connection_alone(
    engine: AsyncEngine,
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite connections are not checked")

    async def two_pids() -> set[int]:
        async with engine.connect() as first, engine.connect() as second:
            return {
                (await connection.execute(text("SELECT pg_backend_pid()"))).scalar_one()
                for connection in (first, second)
            }

    ended, kept = sorted(await two_pids())
    await ended_by_the_server(engine, ended)  # an idle_session_timeout or a pooler ending one idle session
    for _ in range(2):  # each connection checked out again at least once since
        after = await two_pids()
        assert kept in after and ended not in after
