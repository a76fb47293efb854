"""Asks of the same thing at the same time share a read, and every answer is read after its ask arrived."""

from __future__ import annotations

import asyncio

import pytest

from bot.shared_answers import SharedAnswers


class Store:
    """A value that changes, read slowly enough that asks pile up while it is read."""

    def __init__(self) -> None:
        self.value = 0
        self.reads: list[str] = []
        self.gate = asyncio.Event()
        self.began = asyncio.Condition()
        self.failing = False

    async def reading(self, reads: int) -> None:
        """Until that many reads have begun."""
        async with self.began:
            await self.began.wait_for(lambda: len(self.reads) >= reads)

    async def read(self, key: str) -> str:
        seen = f"{key}={self.value}"  # what a snapshot taken as the read begins holds
        async with self.began:
            self.reads.append(seen)
            self.began.notify_all()
        await self.gate.wait()
        if self.failing:
            raise RuntimeError("unreadable")
        return seen


async def test_asks_during_a_read_share_the_next_one_which_sees_what_was_written_before_them() -> None:
    store = Store()
    answers = SharedAnswers(store.read)
    first = asyncio.create_task(answers.ask("status"))
    await store.reading(1)
    store.value = 1  # written after the first read began, before the asks below arrived
    later = [asyncio.create_task(answers.ask("status")) for _ in range(5)]
    other = asyncio.create_task(answers.ask("pending"))
    await store.reading(2)
    store.gate.set()
    assert await first == "status=0"
    assert await asyncio.gather(*later) == ["status=1"] * 5
    assert await other == "pending=1"
    assert store.reads == ["status=0", "pending=1", "status=1"]


async def test_a_failed_read_fails_its_asks_and_the_next_ask_reads_afresh() -> None:
    store = Store()
    answers = SharedAnswers(store.read)
    store.failing = True
    store.gate.set()
    asks = [asyncio.create_task(answers.ask("status")) for _ in range(3)]
    for ask in asks:
        with pytest.raises(RuntimeError, match="unreadable"):
            await ask
    store.failing = False
    assert await answers.ask("status") == "status=0"
    assert len(store.reads) == 2


async def test_an_ask_cancelled_while_it_waits_leaves_the_read_to_the_others() -> None:
    store = Store()
    answers = SharedAnswers(store.read)
    leaving, staying = (asyncio.create_task(answers.ask("status")) for _ in range(2))
    await store.reading(1)
    leaving.cancel()
    store.gate.set()
    assert await staying == "status=0"
    assert leaving.cancelled()


async def test_a_closed_read_cancels_its_asks_and_the_next_reads_and_later_asks_read_again() -> None:
    store = Store()
    answers = SharedAnswers(store.read)
    reading = asyncio.create_task(answers.ask("status"))
    await store.reading(1)
    waiting = asyncio.create_task(answers.ask("status"))  # for the next read, which will not come
    await asyncio.sleep(0)
    await answers.close()
    store.gate.set()
    # An orphaned wait for the next read would hang its asks and every later one.
    _, unanswered = await asyncio.wait({reading, waiting}, timeout=2)
    assert not unanswered and reading.cancelled() and waiting.cancelled()
    assert await asyncio.wait_for(answers.ask("status"), 2) == "status=0"
    assert len(store.reads) == 2


async def test_close_waits_until_the_reads_in_flight_have_ended() -> None:
    began, ended = asyncio.Event(), asyncio.Event()

    async def read(key: str) -> str:
        began.set()
        try:
            await asyncio.Event().wait()
        finally:
            await asyncio.sleep(0.01)  # cleaning up, as a connection returned to its pool would
            ended.set()
        return key

    answers = SharedAnswers(read)
    ask = asyncio.create_task(answers.ask("status"))
    await began.wait()
    await answers.close()
    assert ended.is_set()
    with pytest.raises(asyncio.CancelledError):
        await ask


class Versioned:
    """A store whose every change this process makes bumps its version, read at once."""

    def __init__(self) -> None:
        self.value = 0
        self.version = 0
        self.reads = 0

    def change(self) -> None:
        self.value += 1
        self.version += 1

    async def read(self, key: str) -> str:
        self.reads += 1
        return f"{key}={self.value}"


async def test_a_kept_answer_is_given_again_until_the_version_changes() -> None:
    store = Versioned()
    answers = SharedAnswers(store.read, max_age=60, version=lambda: store.version)
    assert [await answers.ask("status") for _ in range(3)] == ["status=0"] * 3
    assert store.reads == 1
    store.change()
    assert answers.kept("status") is None
    assert await answers.ask("status") == "status=1"
    assert store.reads == 2


async def test_a_kept_answer_is_read_again_once_older_than_its_max_age() -> None:
    store = Versioned()
    answers = SharedAnswers(store.read, max_age=0.05, version=lambda: store.version)
    assert await answers.ask("status") == "status=0"
    store.value = 1  # changed by another process: the version here does not move
    assert await answers.ask("status") == "status=0"
    await asyncio.sleep(0.06)
    assert await answers.ask("status") == "status=1"
    assert store.reads == 2


async def test_an_answer_read_while_the_version_changed_is_not_kept() -> None:
    store = Store()
    version = 0
    answers = SharedAnswers(store.read, max_age=60, version=lambda: version)
    first = asyncio.create_task(answers.ask("status"))
    await store.reading(1)
    store.value, version = 1, 1  # committed while the read was on its way: it may not have seen it
    store.gate.set()
    assert await first == "status=0"
    assert answers.kept("status") is None
    assert await answers.ask("status") == "status=1"


async def test_answers_kept_for_keys_no_one_asks_again_are_dropped_as_new_ones_are_kept() -> None:
    store = Versioned()
    answers = SharedAnswers(store.read, max_age=0.05, version=lambda: store.version)
    for n in range(1000):  # whatever people type after `/aios status`
        await answers.ask(f"status {n}")
    await asyncio.sleep(0.06)
    await answers.ask("status")
    assert len(answers._kept) == 1  # not asked again, so never found stale by an ask: dropped all the same
