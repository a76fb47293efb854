"""SQLite's driver as the engine uses it: each statement one trip to the connection's thread — none at all once
the transaction holds the write lock, whose statements run on the event loop's thread — and otherwise what
SQLAlchemy's aiosqlite adapter gives (rows, rowcount, lastrowid, executemany, RETURNING, errors, streaming).

The trip counts rest on aiosqlite's private ``Connection._execute``, which every call to the connection's thread
goes through; a release that renames it fails here first."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import text
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine
from sqlalchemy.util import greenlet_spawn

from storage import engine as engine_module
from storage import sqlite_driver
from storage.engine import create_engine, read_only_engine
from storage.sqlite_driver import OneTripConnection


@pytest.fixture
async def engine(tmp_path: Path) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'driver.db'}")
    async with engine.begin() as connection:
        await connection.execute(
            text("CREATE TABLE item (id INTEGER PRIMARY KEY, name TEXT UNIQUE, n INTEGER)")
        )
        await connection.execute(text("INSERT INTO item (name, n) VALUES ('a', 1), ('b', 2), ('c', 3)"))
    yield engine
    await engine.dispose()


def trips_to_sqlite(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each call handed to an aiosqlite connection's thread from now on."""
    trips: list[str] = []
    handing = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        trips.append(getattr(fn, "__name__", repr(fn)))
        return await handing(self, fn, *args, **kwargs)  # type: ignore[no-untyped-call]

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
    return trips


async def begun(connection: AsyncConnection) -> None:
    await connection.begin()
    await connection.execute(text("SELECT 1"))  # the transaction's BEGIN is sent


async def test_a_statement_and_its_rows_are_one_trip_to_the_connections_thread(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with read_only_engine(engine).connect() as connection:
        await begun(connection)
        trips = trips_to_sqlite(monkeypatch)
        result = await connection.execute(text("SELECT name FROM item ORDER BY id"))
        assert result.scalars().all() == ["a", "b", "c"]
        # Neither the cursor's opening nor its closing, nor the fetching of its rows, is a trip of its own.
        assert len(trips) == 1, trips


async def test_an_update_returning_gives_its_rows_and_its_rowcount(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        result = await connection.execute(text("UPDATE item SET n = n + 10 WHERE n >= 2 RETURNING name, n"))
        assert sorted(tuple(row) for row in result) == [("b", 12), ("c", 13)]
        assert result.rowcount == 2
        unchanged = await connection.execute(text("UPDATE item SET n = 0 WHERE n > 100 RETURNING name"))
        assert unchanged.all() == []
        assert unchanged.rowcount == 0


async def test_an_insert_gives_its_lastrowid_and_an_update_its_rowcount(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        inserted = await connection.execute(text("INSERT INTO item (name, n) VALUES ('d', 4)"))
        assert inserted.lastrowid == 4
        updated = await connection.execute(text("UPDATE item SET n = 0 WHERE n < 3"))
        assert updated.rowcount == 2


async def test_executemany_runs_every_parameter_set_at_once(engine: AsyncEngine) -> None:
    async with engine.begin() as connection:
        many = [{"name": name, "n": n} for n, name in enumerate("defg", start=4)]
        result = await connection.execute(text("INSERT INTO item (name, n) VALUES (:name, :n)"), many)
        assert result.rowcount == 4
        assert (await connection.execute(text("SELECT count(*) FROM item"))).scalar_one() == 7


async def test_a_write_transaction_makes_no_trip_when_the_write_lock_is_free(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    trips = trips_to_sqlite(monkeypatch)
    async with engine.begin() as connection:
        await connection.execute(text("UPDATE item SET n = n + 1"))
        rows = await connection.execute(text("SELECT n FROM item ORDER BY id"))
        assert rows.scalars().all() == [2, 3, 4]
    assert trips == [], trips  # BEGIN IMMEDIATE, the statements and COMMIT all ran on the event loop's thread
    async with read_only_engine(engine).connect() as reader:
        read = await reader.execute(text("SELECT sum(n) FROM item"))
        assert read.scalar_one() == 9  # committed, seen by another connection


async def test_a_begin_waits_for_a_lock_held_elsewhere_on_the_connections_thread(
    engine: AsyncEngine, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    holder = sqlite3.connect(tmp_path / "driver.db", isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    trips = trips_to_sqlite(monkeypatch)
    ticks = 0

    async def ticking() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.001)
            ticks += 1

    ticker = asyncio.create_task(ticking())
    asyncio.get_running_loop().call_later(0.2, holder.rollback)
    try:
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE item SET n = n + 1"))
    finally:
        ticker.cancel()
        holder.close()
    assert trips and set(trips) == {"_begin_once"}, trips  # its tries waited on the connection's thread
    assert ticks >= 50, ticks  # which went on meanwhile


async def test_a_write_transaction_ended_by_an_error_or_a_cancellation_lets_the_next_writer_in(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "BUSY_TIMEOUT_SECONDS", 0.0)  # a lock left held fails the next writer
    with pytest.raises(IntegrityError):
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE item SET n = 100 WHERE name = 'a'"))
            await connection.execute(text("INSERT INTO item (name, n) VALUES ('a', 9)"))

    started = asyncio.Event()

    async def writing_then_waiting() -> None:
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE item SET n = 200 WHERE name = 'b'"))
            started.set()
            await asyncio.sleep(60)

    writer = asyncio.create_task(writing_then_waiting())
    await started.wait()
    writer.cancel()
    with pytest.raises(asyncio.CancelledError):
        await writer
    async with engine.begin() as next_writer:
        rows = await next_writer.execute(text("SELECT n FROM item ORDER BY id"))
        assert rows.scalars().all() == [1, 2, 3]  # both rolled back


async def test_writers_of_one_process_take_turns_on_the_event_loops_thread(engine: AsyncEngine) -> None:
    async def add_one() -> None:
        async with engine.begin() as connection:
            n = (await connection.execute(text("SELECT n FROM item WHERE name = 'a'"))).scalar_one()
            await asyncio.sleep(0)  # the others run meanwhile; they queue for the write lock
            await connection.execute(text("UPDATE item SET n = :n WHERE name = 'a'"), {"n": n + 1})

    await asyncio.gather(*(add_one() for _ in range(40)))
    async with engine.connect() as connection:
        total = await connection.execute(text("SELECT n FROM item WHERE name = 'a'"))
        assert total.scalar_one() == 41


async def test_a_unique_violation_is_an_integrity_error_and_the_transaction_goes_on(
    engine: AsyncEngine,
) -> None:
    async with engine.begin() as connection:
        with pytest.raises(IntegrityError, match=r"UNIQUE constraint failed: item\.name"):
            await connection.execute(text("INSERT INTO item (name, n) VALUES ('a', 9)"))
        assert (await connection.execute(text("SELECT count(*) FROM item"))).scalar_one() == 3


async def test_a_writer_that_cannot_wait_is_told_the_database_is_locked(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "BUSY_TIMEOUT_SECONDS", 0.0)  # one try of BEGIN IMMEDIATE, no more
    async with engine.begin() as holder:
        await holder.execute(text("UPDATE item SET n = n + 1"))  # holds the write lock (BEGIN IMMEDIATE)
        async with engine.connect() as other:
            with pytest.raises(OperationalError, match="database is locked"):
                await other.begin()


async def test_a_statement_on_a_closed_driver_connection_invalidates_it(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        await begun(connection)
        raw = await connection.get_raw_connection()
        driver = raw.driver_connection
        assert isinstance(driver, aiosqlite.Connection)
        await driver.close()
        with pytest.raises(OperationalError, match="no active connection") as raised:
            await connection.execute(text("SELECT 1"))
        assert raised.value.connection_invalidated
    async with engine.connect() as fresh:
        assert (await fresh.execute(text("SELECT count(*) FROM item"))).scalar_one() == 3


async def test_a_streamed_result_still_reads_its_rows_as_asked(engine: AsyncEngine) -> None:
    async with engine.connect() as connection:
        result = await connection.stream(text("SELECT name FROM item ORDER BY id"))
        assert [name async for name in result.scalars()] == ["a", "b", "c"]


async def test_nothing_runs_on_the_event_loops_thread_while_a_call_for_the_connection_waits_on_its_thread(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A call whose wait was cancelled still runs on the connection's thread (a BEGIN's try and the rollback queued
    after it): what comes next must run after it, not beside it on the event loop's thread."""
    async with engine.connect() as connection:
        adapted = (await connection.get_raw_connection()).dbapi_connection
        assert isinstance(adapted, OneTripConnection)
        on_its_thread = threading.Event()

        def slow(_connection: sqlite3.Connection) -> None:
            on_its_thread.set()
            time.sleep(0.2)

        waiting = asyncio.ensure_future(greenlet_spawn(adapted.on_thread, slow))
        await asyncio.to_thread(on_its_thread.wait, 5)
        waiting.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiting
        assert not adapted.free_here()
        trips = trips_to_sqlite(monkeypatch)
        await connection.begin()
        await connection.execute(text("UPDATE item SET n = n + 1"))
        await connection.commit()
        assert "_begin_once" in trips, trips  # queued behind the slow call, not run beside it
        assert adapted.free_here()


async def test_a_long_write_transaction_lets_the_event_loop_turn(engine: AsyncEngine) -> None:
    ticks = 0

    async def ticking() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0)
            ticks += 1

    async with engine.begin() as connection:
        ticker = asyncio.create_task(ticking())
        await asyncio.sleep(0)
        before = ticks
        started = time.perf_counter()
        for n in range(3_000):
            await connection.execute(
                text("INSERT INTO item (name, n) VALUES (:name, :n)"), {"name": f"x{n}", "n": n}
            )
        held = time.perf_counter() - started
        ticker.cancel()
    # Its statements run on the event loop's thread; the loop turns at least every few milliseconds meanwhile.
    assert ticks - before >= held / 0.05, (ticks - before, held)


async def test_a_writers_connection_checkpoints_the_wal_on_its_thread_every_few_dozen_commits(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_driver, "CHECKPOINT_EVERY_COMMITS", 3)
    async with engine.connect() as connection:
        autocheckpoint = await connection.execute(text("PRAGMA wal_autocheckpoint"))
        assert autocheckpoint.scalar_one() == 0  # not in a COMMIT on the event loop's thread
    trips = trips_to_sqlite(monkeypatch)
    for _ in range(3):
        async with engine.begin() as connection:
            await connection.execute(text("UPDATE item SET n = n + 1"))
    await asyncio.gather(*sqlite_driver._CHECKPOINTS)
    # The fixture's transaction was the connection's first commit: the third is one of these. A BEGIN sent while
    # the checkpoint waits its turn on the thread goes there too, after it.
    assert trips.count("_checkpoint") == 1, trips


async def test_an_in_memory_database_keeps_its_writers_on_the_connections_thread(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    engine = create_engine("sqlite+aiosqlite://")
    try:
        async with engine.begin() as connection:
            await connection.execute(text("CREATE TABLE t (n INTEGER)"))
        trips = trips_to_sqlite(monkeypatch)
        async with engine.begin() as connection:
            await connection.execute(text("INSERT INTO t VALUES (1)"))
        assert "_run" in trips, trips  # not in WAL mode: a COMMIT there may wait for readers
    finally:
        await engine.dispose()
