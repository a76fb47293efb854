"""Workers claim the intents a front door stored without an owner: each intent goes to one worker, oldest first,
at most as many as asked; intents someone owns, or no longer waiting, are left alone."""

from __future__ import annotations

import asyncio

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from runtime.intake import IncomingIntent, IntentInbox
from storage.leases import claim_intents
from storage.records import Intent, IntentStatus
from storage.unit_of_work import UnitOfWorkFactory


def incoming(text: str, source: str = "slash") -> IncomingIntent:
    return IncomingIntent(source=source, team_id="T1", channel="C1", thread_ts=None, user="U1", text=text)


async def test_claims_go_oldest_first_and_never_to_two_workers(units: UnitOfWorkFactory) -> None:
    front_door = IntentInbox(units, owner=None)
    ids = [await front_door.accept(incoming(f"intent {n}")) for n in range(12)]
    first = await claim_intents(units, owner=101, limit=5)
    assert first == ids[:5]
    claims = await asyncio.gather(*(claim_intents(units, owner, limit=4) for owner in (102, 103, 104)))
    claimed = [intent_id for claim in claims for intent_id in claim]
    assert sorted(claimed) == ids[5:] and len(set(claimed)) == len(claimed)
    assert await claim_intents(units, owner=105, limit=5) == []
    async with units() as uow:
        owners = {i: (await uow.get(Intent, i)).owner for i in ids}  # type: ignore[union-attr]
    assert {owners[i] for i in ids[:5]} == {101} and None not in owners.values()


async def test_owned_and_handled_intents_are_not_claimed(units: UnitOfWorkFactory) -> None:
    owned = await IntentInbox(units, owner=7).accept(incoming("planned by its own process"))
    handled = await IntentInbox(units, owner=None).accept(incoming("already dispatched"))
    waiting = await IntentInbox(units, owner=None).accept(incoming("waiting"))
    async with units() as uow:
        intent = await uow.get(Intent, handled)
        assert intent is not None
        intent.status = IntentStatus.DISPATCHED
        uow.session.add(intent)
        await uow.commit()
    assert await claim_intents(units, owner=9, limit=10) == [waiting]
    async with units() as uow:
        assert (await uow.get(Intent, owned)).owner == 7  # type: ignore[union-attr]


async def test_an_owner_gets_back_the_intents_it_holds_but_is_not_planning(units: UnitOfWorkFactory) -> None:
    """Taken over for it by recovery, or claimed by a commit whose reply never came: still its to plan."""
    held = await IntentInbox(units, owner=9).accept(incoming("claimed, but the reply was lost"))
    planning = await IntentInbox(units, owner=9).accept(incoming("being planned right now"))
    await IntentInbox(units, owner=9).accept(incoming("undo A-1", source="undo"))  # filed, never planned
    await IntentInbox(units, owner=7).accept(incoming("another owner's"))
    waiting = await IntentInbox(units, owner=None).accept(incoming("waiting"))
    assert held is not None and planning is not None
    claimed = await claim_intents(units, owner=9, limit=10, planning={planning}, filed_sources={"undo"})
    assert claimed == [held, waiting]
    assert await claim_intents(
        units, owner=9, limit=1, planning={planning, held}, filed_sources={"undo"}
    ) == [waiting]


async def test_an_idle_claim_does_not_wait_for_the_write_lock(
    engine: AsyncEngine, units: UnitOfWorkFactory
) -> None:
    """With nothing to claim, a claim only reads: a writer holding the store (a front door storing an intent)
    keeps no worker waiting, nor is kept waiting by one."""
    await IntentInbox(units, owner=7).accept(incoming("someone's already"))
    async with engine.begin() as writer:  # on SQLite a BEGIN IMMEDIATE: the database's one write lock
        if engine.dialect.name == "postgresql":
            await writer.execute(text("LOCK TABLE intent IN EXCLUSIVE MODE"))  # writes and row locks wait
        assert await asyncio.wait_for(claim_intents(units, owner=9, limit=8), timeout=5) == []
