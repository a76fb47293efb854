"""Group commit: writes that arrive together share one transaction.

The first caller opens a batch and starts its commit; callers that arrive while that commit waits for its turn
(the previous batch still committing) join the batch. Once the commit has its turn the batch is closed, and the
next caller opens the next one. Every caller gets its result only after the commit that holds its write.

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
        self, write: Callable[[list[Item]], Awaitable[list[Result]]], *, max_batch: int = MAX_BATCH
    ) -> None:
        """``write(items)``: the items written in a transaction of its own, committed; a result for each."""
        self._write = write
        self._max_batch = max_batch
        self._open: _Batch[Item, Result] | None = None
        self._turn = asyncio.Lock()  # one batch commits at a time, so the next one gathers meanwhile
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
                    results = await self._write_together(batch)
                except Exception as exc:
                    if len(batch.items) == 1:
                        _settle(batch.waiters[0], exc)
                        return
                    for item, waiter in zip(batch.items, batch.waiters, strict=True):
                        _settle(waiter, await self._write_alone(item))
                    return
        except BaseException:  # the process is stopping
            if self._open is batch:
                self._open = None
            for waiter in batch.waiters:
                waiter.cancel()
            raise
        for waiter, result in zip(batch.waiters, results, strict=True):
            _settle(waiter, result)

    async def _write_together(self, batch: _Batch[Item, Result]) -> list[Result]:
        if self._open is batch:
            self._open = None  # its turn has come: later callers open the next batch
        return await self._write(batch.items)

    async def _write_alone(self, item: Item) -> Result | Exception:
        try:
            [result] = await self._write([item])
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
