"""A memory written in another piece of work's transaction (an execution's booking keeps its outcome so): it is
committed or rolled back with that work, and a memory the store refuses is refused as it is prepared, before
anything is written, so that the work can go on and commit without it."""

from __future__ import annotations

import pytest
from sqlmodel import select

from storage.memory import EmbeddedMemoryStore, MemoryStoreError, PreparedMemory
from storage.records import Incident, Memory
from storage.unit_of_work import UnitOfWorkFactory
from tests.conftest import Clock

TEAM = "T0SHOP"


async def prepared(
    store: EmbeddedMemoryStore, team: str, text: str, *, kind: str, key: str
) -> PreparedMemory:
    memory = await store.prepare(team, text, kind=kind, key=key)
    assert memory is not None  # the embedded store writes within another transaction
    return memory


async def test_a_memory_written_within_a_unit_of_work_commits_and_rolls_back_with_it(
    units: UnitOfWorkFactory, clock: Clock
) -> None:
    store = EmbeddedMemoryStore(units, clock)
    async with units() as uow:
        await store.remember_within(
            uow, await prepared(store, TEAM, "Refunded order 1003", kind="decision", key="order:1003")
        )
        # not committed: rolled back as the unit of work ends
    assert await store.lookup(TEAM, "order:1003") == []

    async with units() as uow:
        await uow.add(Incident(kind="test", detail="the caller's own write"))
        await store.remember_within(
            uow, await prepared(store, TEAM, "Refunded order 1003", kind="decision", key="order:1003")
        )
        await uow.commit()
    [hit] = await store.lookup(TEAM, "order:1003")
    assert hit.text == "Refunded order 1003" and hit.kind == "decision"
    assert [h.id for h in await store.search(TEAM, "refunded order 1003")] == [hit.id]

    async with units() as uow:  # the same text again is the same memory
        await store.remember_within(
            uow, await prepared(store, TEAM, "refunded  order 1003", kind="decision", key="order:1003")
        )
        await uow.commit()
    async with units.read() as uow:
        assert len((await uow.session.exec(select(Memory))).all()) == 1


@pytest.mark.parametrize(
    ("team", "kind", "key", "refusal"),
    [
        ("", "decision", "order:1", "needs a team"),
        (TEAM, "decision", "customer:" + "a" * 200 + "@example.com", "key takes at most 200"),
        (TEAM, "k" * 31, None, "kind takes at most 30"),
        ("T" * 41, "note", None, "team takes at most 40"),
    ],
)
async def test_a_memory_refused_within_a_unit_of_work_leaves_the_rest_of_it_to_commit(
    units: UnitOfWorkFactory, clock: Clock, team: str, kind: str, key: str | None, refusal: str
) -> None:
    """PostgreSQL would refuse the row (a value longer than its column) and, with it, the whole transaction."""
    store = EmbeddedMemoryStore(units, clock)
    async with units() as uow:
        await uow.add(Incident(kind="test", detail="the caller's own write"))
        with pytest.raises(MemoryStoreError, match=refusal):
            await store.prepare(team, "emailed a customer", kind=kind, key=key)
        await uow.commit()
    async with units.read() as uow:
        assert len((await uow.session.exec(select(Incident))).all()) == 1
        assert (await uow.session.exec(select(Memory))).all() == []
