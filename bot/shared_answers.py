"""Answers that asks of the same thing at the same time share, each read after its ask arrived."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)


class SharedAnswers(Generic[Key]):
    """Asks of the same key that arrive while its answer is being read wait for the next read, which begins when
    that one ends and answers every ask that arrived meanwhile: each answer is read after its ask arrived (as
    current as a read of its own would be), and a burst of asks costs two reads rather than one each. A read that
    fails fails the asks it answers; the next one is read afresh. A read that is cancelled (see close) cancels
    its asks and those waiting for the next read."""

    def __init__(self, read: Callable[[Key], Awaitable[str]]) -> None:
        self._read = read
        self._next: dict[Key, asyncio.Future[str]] = {}  # the read that asks arriving now will get
        self._reading: dict[Key, asyncio.Task[None]] = {}

    async def ask(self, key: Key) -> str:
        answer = self._next.get(key)
        if answer is None:
            answer = self._next[key] = asyncio.get_running_loop().create_future()
            # A failure whose asks were all cancelled is retrieved by nobody: not worth asyncio's warning.
            answer.add_done_callback(lambda done: done.cancelled() or done.exception())
            if key not in self._reading:
                self._reading[key] = asyncio.create_task(self._read_while_asked(key), name="shared_answer")
        # Shielded: an ask that is cancelled (its client gone) leaves the read to the others.
        return await asyncio.shield(answer)

    async def _read_while_asked(self, key: Key) -> None:
        try:
            while (answer := self._next.pop(key, None)) is not None:
                try:
                    answer.set_result(await self._read(key))
                except Exception as exc:
                    answer.set_exception(exc)
                except BaseException:  # the process is stopping
                    answer.cancel()
                    # No read follows this one: asks waiting for the next would wait for ever, and so would
                    # every later ask of the key, as they would find that future and start no read.
                    if (waiting := self._next.pop(key, None)) is not None:
                        waiting.cancel()
                    raise
        finally:
            del self._reading[key]

    async def close(self) -> None:
        """Cancel the reads in flight and wait until they have ended, before the store is closed under them."""
        reading = list(self._reading.values())
        for read in reading:
            read.cancel()
        await asyncio.gather(*reading, return_exceptions=True)
