"""Answers that asks of the same thing at the same time share, each read after its ask arrived or kept briefly."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, TypeVar

Key = TypeVar("Key", bound=Hashable)


@dataclass(frozen=True)
class _Kept:
    answer: str
    version: int  # the store's version when its read began
    read_at: float  # time.monotonic() when its read began


class SharedAnswers(Generic[Key]):
    """Asks of the same key that arrive while its answer is being read wait for the next read, which begins when
    that one ends and answers every ask that arrived meanwhile: each answer is read after its ask arrived (as
    current as a read of its own would be), and a burst of asks costs two reads rather than one each. A read that
    fails fails the asks it answers; the next one is read afresh. A read that is cancelled (see close) cancels
    its asks and those waiting for the next read.

    With ``max_age`` and ``version`` (a number that grows with every change this process makes to what is read),
    an answer is also kept, and given to the asks that arrive while the version is the one its read began at and
    that read began at most ``max_age`` seconds ago: an ask sees every change made here before it, and a change
    made by another process at most ``max_age`` seconds late."""

    def __init__(
        self,
        read: Callable[[Key], Awaitable[str]],
        *,
        max_age: float = 0.0,
        version: Callable[[], int] = lambda: 0,
    ) -> None:
        self._read = read
        self._max_age = max_age
        self._version = version
        self._next: dict[Key, asyncio.Future[str]] = {}  # the read that asks arriving now will get
        self._reading: dict[Key, asyncio.Task[None]] = {}
        self._kept: dict[Key, _Kept] = {}

    def kept(self, key: Key) -> str | None:
        """The answer kept for ``key`` if it is still current enough to give, without reading."""
        kept = self._kept.get(key)
        if kept is None:
            return None
        if kept.version != self._version() or time.monotonic() - kept.read_at > self._max_age:
            del self._kept[key]
            return None
        return kept.answer

    def _forget_stale(self) -> None:
        # Keys are whatever people typed: answers no longer given are dropped as new ones are kept, so what is
        # kept is at most what was read in the last ``max_age`` seconds.
        version, now = self._version(), time.monotonic()
        self._kept = {
            key: kept
            for key, kept in self._kept.items()
            if kept.version == version and now - kept.read_at <= self._max_age
        }

    async def ask(self, key: Key) -> str:
        if (kept := self.kept(key)) is not None:
            return kept
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
                version, read_at = self._version(), time.monotonic()
                try:
                    read = await self._read(key)
                except Exception as exc:
                    answer.set_exception(exc)
                except BaseException:  # the process is stopping
                    answer.cancel()
                    # No read follows this one: asks waiting for the next would wait for ever, and so would
                    # every later ask of the key, as they would find that future and start no read.
                    if (waiting := self._next.pop(key, None)) is not None:
                        waiting.cancel()
                    raise
                else:
                    if self._max_age > 0:
                        self._forget_stale()
                        self._kept[key] = _Kept(read, version, read_at)
                    answer.set_result(read)
        finally:
            del self._reading[key]

    async def close(self) -> None:
        """Cancel the reads in flight and wait until they have ended, before the store is closed under them."""
        reading = list(self._reading.values())
        for read in reading:
            read.cancel()
        await asyncio.gather(*reading, return_exceptions=True)
