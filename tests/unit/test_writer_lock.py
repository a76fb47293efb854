"""SQLite's in-process writer lock: one holder at a time, in order of arrival, except that an urgent writer (a
Slack ack waits on it) goes before background writers already queued; a cancelled waiter leaves no hole."""

from __future__ import annotations

import asyncio

import pytest

from storage.unit_of_work import WriterLock


async def test_urgent_writers_go_before_queued_background_writers_and_each_queue_keeps_its_order() -> None:
    lock = WriterLock()
    order: list[str] = []
    await lock.acquire(urgent=False)  # a planning transaction holds it

    async def write(name: str, *, urgent: bool) -> None:
        await lock.acquire(urgent=urgent)
        order.append(name)
        await asyncio.sleep(0)
        lock.release()

    tasks = [
        asyncio.ensure_future(write("plan 1", urgent=False)),
        asyncio.ensure_future(write("plan 2", urgent=False)),
        asyncio.ensure_future(write("ack 1", urgent=True)),
        asyncio.ensure_future(write("ack 2", urgent=True)),
    ]
    await asyncio.sleep(0)
    lock.release()
    await asyncio.gather(*tasks)
    assert order == ["ack 1", "ack 2", "plan 1", "plan 2"]


async def test_a_cancelled_waiter_neither_holds_the_lock_nor_blocks_the_next() -> None:
    lock = WriterLock()
    await lock.acquire(urgent=False)
    gone = asyncio.ensure_future(lock.acquire(urgent=True))
    after = asyncio.ensure_future(lock.acquire(urgent=False))
    await asyncio.sleep(0)
    gone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await gone
    lock.release()
    await asyncio.wait_for(after, 1)
    lock.release()
    await asyncio.wait_for(lock.acquire(urgent=False), 1)  # free again


async def test_a_waiter_cancelled_as_the_lock_is_handed_to_it_passes_it_on() -> None:
    lock = WriterLock()
    await lock.acquire(urgent=False)
    handed = asyncio.ensure_future(lock.acquire(urgent=False))
    after = asyncio.ensure_future(lock.acquire(urgent=False))
    await asyncio.sleep(0)
    lock.release()  # handed to the first waiter, which is cancelled before it runs
    handed.cancel()
    with pytest.raises(asyncio.CancelledError):
        await handed
    await asyncio.wait_for(after, 1)
