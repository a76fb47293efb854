"""In a worker, intents are planned by its claim loop alone, a few at a time: the dead-owner sweep leaves the
intents a front door stored without an owner to the loop, and hands it those it takes over from a dead worker
rather than planning them one after another inside the sweep. A process without a claim loop takes unowned
intents at start, and in its sweeps only once they are older than the grace period (a worker may claim them)."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from bot.bootstrap import Aios
from runtime.intake import IncomingIntent, IntentInbox
from runtime.worker import Worker
from storage.records import Intent, utcnow
from tests.integration.conftest import CHANNEL, REQUESTER


async def stored(aios: Aios, owner: int | None, n: int) -> int:
    """An intent as a front door stores it: without an owner (`serve --no-work`), or as ``owner``'s."""
    incoming = IncomingIntent(
        source="mention", team_id="T", channel=CHANNEL, thread_ts=f"2.{n}", user=REQUESTER, text="what's up?"
    )
    intent_id = await IntentInbox(aios.units, owner=owner).accept(incoming)
    assert intent_id is not None
    return intent_id


async def owners_and_statuses(aios: Aios, ids: list[int]) -> list[tuple[int | None, str]]:
    async with aios.units.read() as uow:
        intents = [await uow.get(Intent, intent_id) for intent_id in ids]
    return [(intent.owner, intent.status) for intent in intents if intent is not None]


async def test_a_workers_recovery_and_sweeps_leave_unowned_intents_to_its_claim_loop(aios: Aios) -> None:
    ids = [await stored(aios, None, n) for n in range(3)]
    aios.claim_loop = True
    await aios.recover()  # at start
    await aios.background.drain()
    await aios.take_over_from_the_dead()  # and every few seconds
    assert await owners_and_statuses(aios, ids) == [(None, "received")] * 3


async def test_a_dead_workers_intents_are_taken_over_for_the_claim_loop_which_plans_them(aios: Aios) -> None:
    dead = aios.lease.id + 1000  # a lease no process holds
    ids = [await stored(aios, dead, n) for n in range(3)]
    aios.claim_loop = True
    await aios.take_over_from_the_dead()
    assert await owners_and_statuses(aios, ids) == [(aios.lease.id, "received")] * 3  # taken, not planned

    stop = asyncio.Event()
    worker = asyncio.create_task(Worker(aios.units, aios.lease, aios.process, poll_seconds=0.05).run(stop))
    try:
        for _ in range(200):
            if {status for _, status in await owners_and_statuses(aios, ids)} == {"dispatched"}:
                break
            await asyncio.sleep(0.05)
    finally:
        stop.set()
        await worker
    assert await owners_and_statuses(aios, ids) == [(aios.lease.id, "dispatched")] * 3


async def test_without_a_claim_loop_unowned_intents_wait_out_the_grace_period_in_the_sweeps(
    aios: Aios,
) -> None:
    old, young = [await stored(aios, None, n) for n in range(2)]
    await aios.take_over_from_the_dead()
    assert await owners_and_statuses(aios, [old, young]) == [(None, "received")] * 2

    async with aios.units() as uow:
        intent = await uow.get(Intent, old)
        assert intent is not None
        intent.created_at = utcnow() - timedelta(seconds=aios.settings.recovery_grace_seconds + 1)
        uow.session.add(intent)
        await uow.commit()
    await aios.take_over_from_the_dead()
    assert await owners_and_statuses(aios, [old, young]) == [
        (aios.lease.id, "dispatched"),
        (None, "received"),
    ]

    await aios.recover()  # at start, no grace
    await aios.background.drain()
    assert await owners_and_statuses(aios, [young]) == [(aios.lease.id, "dispatched")]


async def test_a_sweep_reads_neither_its_own_backlog_nor_the_intents_its_claim_loop_will_claim(
    aios: Aios,
) -> None:
    dead = aios.lease.id + 1000  # a lease no process holds
    [
        await stored(aios, aios.lease.id, n) for n in range(3)
    ]  # planned here: no sweep of this process's takes them
    unowned = await stored(aios, None, 3)
    left_by_the_dead = await stored(aios, dead, 4)
    async with aios.units.read() as uow:
        with_unowned = await uow.runs.unplanned_intents(aios.lease.id, unowned=True)
        without = await uow.runs.unplanned_intents(aios.lease.id, unowned=False)
    assert [intent.id for intent in with_unowned] == [unowned, left_by_the_dead]
    assert [intent.id for intent in without] == [left_by_the_dead]


async def test_a_sweep_with_nothing_to_take_over_waits_for_no_writer(aios: Aios) -> None:
    if aios.engine.dialect.name != "sqlite":
        pytest.skip("only SQLite's writers queue on the process's writer lock")
    await stored(aios, aios.lease.id, 0)  # this process's own: nothing for its sweep to take
    async with aios.units() as writer:  # a long write holds the lock: an ack's group commit, a planning step
        await writer.runs.intents_with_status("received")
        async with asyncio.timeout(10):
            await aios.take_over_from_the_dead()
