"""The unit of work: its repositories, one per aggregate, share its one transaction and live as long as it does."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event, insert, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col

from storage.records import Intent, IntentStatus, Run
from storage.unit_of_work import TAKE_OVER_BATCH, UnitOfWorkFactory


def intent() -> Intent:
    return Intent(source="console", channel="C1", user="U1", text="refund order 7")


async def test_the_repositories_are_made_once_per_unit_of_work_over_its_session(
    units: UnitOfWorkFactory,
) -> None:
    async with units() as uow:
        repositories = (uow.runs, uow.approvals, uow.executions, uow.budgets, uow.replay, uow.undos)
        assert (uow.runs, uow.approvals, uow.executions, uow.budgets, uow.replay, uow.undos) == repositories
        assert all(repository.session is uow.session for repository in repositories)
    async with units() as other:
        assert other.runs is not repositories[0]
        assert other.session is not repositories[0].session


async def test_what_one_repository_writes_another_reads_in_the_same_transaction(
    units: UnitOfWorkFactory,
) -> None:
    async with units() as uow:
        stored = await uow.add(intent())
        assert stored.id is not None
        assert [i.id for i in await uow.runs.intents_with_status(IntentStatus.RECEIVED)] == [stored.id]
        run = await uow.add(Run(intent_id=stored.id, agent="support"))
        assert await uow.runs.runs_for_intent(stored.id) == [run]
        assert await uow.first_time("once") and not await uow.first_time("once")
        # Left without a commit: all of it is rolled back together.
    async with units() as uow:
        assert await uow.runs.intents_with_status(IntentStatus.RECEIVED) == []
        assert await uow.first_time("once")


async def test_outside_async_with_the_unit_of_work_refuses(units: UnitOfWorkFactory) -> None:
    uow = units()
    with pytest.raises(RuntimeError, match="inside `async with`"):
        uow.runs  # noqa: B018
    with pytest.raises(RuntimeError, match="inside `async with`"):
        await uow.get(Intent, 1)
    async with uow:
        pass
    with pytest.raises(RuntimeError, match="inside `async with`"):
        uow.session  # noqa: B018


async def test_the_shared_writes_are_the_unit_of_works_alone(units: UnitOfWorkFactory) -> None:
    shared = ("add", "get", "insert_if_absent", "first_time", "forget_once", "take_over")
    async with units() as uow:
        repositories = (uow.runs, uow.approvals, uow.executions, uow.budgets, uow.replay, uow.undos)
        for repository in repositories:
            assert not [name for name in shared if hasattr(repository, name)], type(repository).__name__
        assert all(callable(getattr(uow, name)) for name in shared)


async def test_a_take_over_is_one_update_per_batch_of_rows_with_the_same_previous_owner(
    engine: AsyncEngine, units: UnitOfWorkFactory
) -> None:
    dead, also_dead, replica, me = 6, 7, 8, 9
    owners = [dead] * (2 * TAKE_OVER_BATCH + 500) + [None] * 10 + [also_dead] * 5
    rows = [{**intent().model_dump(exclude={"id"}), "owner": owner} for owner in owners]
    async with units() as uow:
        await uow.session.exec(insert(Intent).values(rows))
        await uow.commit()
    async with units.read() as uow:
        read = list((await uow.session.exec(select(Intent))).scalars())  # type: ignore[call-overload]
    # Meanwhile another replica took three of the rows over: those are no longer this one's to take.
    theirs = [row.id for row in read if row.owner == dead][:3]
    async with units() as uow:
        await uow.session.exec(update(Intent).where(col(Intent.id).in_(theirs)).values(owner=replica))
        await uow.commit()

    updates: list[str] = []

    def sent(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            updates.append(statement)

    event.listen(engine.sync_engine, "before_cursor_execute", sent)
    try:
        async with units() as uow:
            taken = await uow.take_over([*read, read[0]], me)  # a row given twice is taken once
            await uow.commit()
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", sent)

    # Three batches of the first dead owner's rows, one of the rows that named no owner, one of the other's.
    assert len(updates) == 5
    assert taken == {row.id for row in read} - set(theirs)
    async with units.read() as uow:
        now = {row.id: row.owner for row in (await uow.session.exec(select(Intent))).scalars()}  # type: ignore[call-overload]
    assert now == {row.id: replica if row.id in theirs else me for row in read}


async def test_every_replica_takes_the_groups_of_rows_over_in_one_order(
    engine: AsyncEngine, units: UnitOfWorkFactory
) -> None:
    """Rows of several dead owners, read in any order: the rows of no owner first, then by previous owner, so
    that two replicas taking over the same rows lock them in the same order (on PostgreSQL, no deadlock)."""
    owners = [1007, None, 1006, 1007, None, 1006]
    async with units() as uow:
        await uow.session.exec(
            insert(Intent).values([{**intent().model_dump(exclude={"id"}), "owner": o} for o in owners])
        )
        await uow.commit()
    async with units.read() as uow:
        read = list((await uow.session.exec(select(Intent))).scalars())  # type: ignore[call-overload]

    previous: list[object] = []

    def sent(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if statement.lstrip().upper().startswith("UPDATE"):
            named = {1006, 1007} & set(tuple(parameters))
            previous.append(None if "IS NULL" in statement.upper() else named.pop())

    event.listen(engine.sync_engine, "before_cursor_execute", sent)
    try:
        for order in (read, read[::-1]):
            async with units() as uow:
                await uow.take_over(order, 9)  # not committed: each replica's try starts from the same rows
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", sent)
    assert previous == [None, 1006, 1007, None, 1006, 1007]
