"""Group commit: writes that arrive together share one transaction.

The first caller opens a batch and starts its commit; callers that arrive while that commit waits for its turn
(the previous batch still committing) or for its transaction (SQLite's writer lock held by other work) join the
batch. The write takes the batch when it is ready to write it (where writers wait for a lock, once it has it),
which closes it: the next caller opens the next one.
Batches commit one at a time, so that on SQLite other work waiting for the writer lock has it between two (acks
go first, but a steady stream of them does not keep the planning from the store for good). Every caller gets its
result only after the commit that holds its write.

When a batch's transaction fails, its items are written again one per transaction: one faulty item (text the
database refuses, say) or a passing fault (a dropped connection) then fails only the callers whose own write
fails, each with its own error, rather than every caller of the batch.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")

# A bound on one transaction's size, so that a flood is written in steps rather than as one long commit.
MAX_BATCH = 200


@dataclass
class _Batch(Generic[Item, Result]):
    items: list[Item] = field(default_factory=list)
    waiters: list[asyncio.Future[Result]] = field(default_factory=list)


class GroupCommit(Generic[Item, Result]):
    def __init__(
        self,
        write: Callable[[Callable[[], list[Item]]], Awaitable[list[Result]]],
        *,
        max_batch: int = MAX_BATCH,
    ) -> None:
        """``write(take)``: the items ``take()`` returns written in a transaction of its own, committed, and a
        result for each; ``take`` is called once, when the write is ready for the items (where writers wait for a
        lock, as soon as it has it), and closes the batch."""
        self._write = write
        self._max_batch = max_batch
        self._turn = asyncio.Lock()  # one batch commits at a time, so the next one gathers meanwhile
        self._open: _Batch[Item, Result] | None = None
        self._commits: set[asyncio.Task[None]] = set()

    async def submit(self, item: Item) -> Result:
        """The write's result, once the transaction holding it has committed."""
        batch = self._open
        if batch is None or len(batch.items) >= self._max_batch:
            batch = self._open = _Batch()
            # A task of its own: the commit goes on for the others if the caller that opened it is cancelled.
            commit = asyncio.create_task(self._commit(batch), name="group_commit")
            self._commits.add(commit)
            commit.add_done_callback(self._commits.discard)
        waiter: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        batch.items.append(item)
        batch.waiters.append(waiter)
        return await waiter

    async def _commit(self, batch: _Batch[Item, Result]) -> None:
        try:
            async with self._turn:
                try:
                    results = await self._write(lambda: self._take(batch))
                except Exception as exc:
                    self._close(batch)
                    if len(batch.items) == 1:
                        _settle(batch.waiters[0], exc)
                        return
                    for item, waiter in zip(batch.items, batch.waiters, strict=True):
                        _settle(waiter, await self._write_alone(item))
                    return
        except BaseException:  # the process is stopping
            self._close(batch)
            for waiter in batch.waiters:
                waiter.cancel()
            raise
        self._close(batch)  # a write that never took it: later callers must not join it
        if len(results) != len(batch.waiters):
            lost = RuntimeError(f"a write of {len(batch.waiters)} items gave {len(results)} results")
            for waiter in batch.waiters:
                _settle(waiter, lost)
            return
        for waiter, result in zip(batch.waiters, results, strict=True):
            _settle(waiter, result)

    def _take(self, batch: _Batch[Item, Result]) -> list[Item]:
        self._close(batch)
        return list(batch.items)

    def _close(self, batch: _Batch[Item, Result]) -> None:
        if self._open is batch:
            self._open = None  # later callers open the next batch

    async def _write_alone(self, item: Item) -> Result | Exception:
        try:
            [result] = await self._write(lambda: [item])
        except Exception as exc:
            return exc
        return result


def _settle(waiter: asyncio.Future[Result], outcome: Result | Exception) -> None:
    if waiter.done():  # its caller was cancelled
        return
    if isinstance(outcome, Exception):
        waiter.set_exception(outcome)
    else:
        waiter.set_result(outcome)
