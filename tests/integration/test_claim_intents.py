"""Workers claim the intents a front door stored without an owner: each intent goes to one worker, oldest first,
at most as many as asked; intents someone owns, or no longer waiting, are left alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from runtime.intake import IncomingIntent, IntentInbox
from storage.engine import create_engine
from storage.leases import claim_intents
from storage.migrate import upgrade_to_head
from storage.records import Intent, IntentStatus
from storage.unit_of_work import UnitOfWorkFactory


@pytest.fixture
async def units(database_url: str) -> AsyncIterator[UnitOfWorkFactory]:
    engine = create_engine(database_url)
    await upgrade_to_head(engine)
    yield UnitOfWorkFactory.for_engine(engine)
    await engine.dispose()


def incoming(text: str) -> IncomingIntent:
    return IncomingIntent(source="slash", team_id="T1", channel="C1", thread_ts=None, user="U1", text=text)


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
