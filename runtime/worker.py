"""The worker loop: intents a front door stored without planning them (`aios serve --no-work`) are claimed
from the store and planned here, a few at a time.

A worker notices a new intent within a poll interval. It claims only as many as it has room for, so that
several workers share a burst; each claim makes the worker's lease the intent's owner (see
:func:`storage.leases.claim_intents`), so an intent is planned by one worker. One whose worker died is taken over
by another worker's dead-owner sweep, and planned by that worker's loop like one it claimed: each poll also picks
up the intents its lease owns that it is not planning.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import structlog

from runtime.messagebus import Message
from runtime.messages import HandleIntent
from runtime.undo_filing import SOURCE as UNDO_SOURCE
from storage.leases import Lease, claim_intents
from storage.unit_of_work import UnitOfWorkFactory

log = structlog.get_logger(__name__)

POLL_SECONDS = 0.2  # how soon an idle worker sees a new intent
IN_FLIGHT = 8  # intents one worker plans at once


class Worker:
    def __init__(
        self,
        units: UnitOfWorkFactory,
        lease: Lease,
        process: Callable[[Message], Coroutine[Any, Any, None]],
        *,
        poll_seconds: float = POLL_SECONDS,
        in_flight: int = IN_FLIGHT,
    ) -> None:
        self._units = units
        self._lease = lease
        self._process = process
        self._poll_seconds = poll_seconds
        self._in_flight = in_flight
        self._planning: dict[asyncio.Task[None], int] = {}  # each task and the intent it plans

    async def run(self, stop: asyncio.Event) -> None:
        """Claim and plan intents until ``stop`` is set, then finish those claimed."""
        stopping = asyncio.create_task(stop.wait())
        try:
            while not stop.is_set():
                room = self._in_flight - len(self._planning)
                claimed = await self._claim(room) if room > 0 else []
                for intent_id in claimed:
                    task = asyncio.create_task(self._process(HandleIntent(intent_id)), name="HandleIntent")
                    self._planning[task] = intent_id
                    task.add_done_callback(self._done)
                if claimed and len(self._planning) < self._in_flight:
                    continue  # there may be more waiting
                if len(self._planning) >= self._in_flight:
                    # Full: claim again once one is done, so that other workers take what this one cannot start.
                    await asyncio.wait({stopping, *self._planning}, return_when=asyncio.FIRST_COMPLETED)
                else:
                    await asyncio.wait({stopping}, timeout=self._poll_seconds)
        finally:
            stopping.cancel()
            if self._planning:
                await asyncio.gather(*self._planning, return_exceptions=True)

    async def _claim(self, room: int) -> list[int]:
        try:
            planning = set(self._planning.values())
            return await claim_intents(
                self._units, self._lease.id, room, planning=planning, filed_sources={UNDO_SOURCE}
            )
        except Exception:
            # The store is out of reach for a moment: try again at the next poll rather than stop working. Intents
            # claimed by a commit whose reply was lost are this lease's, and the next poll picks them up.
            log.exception("intents_not_claimed")
            return []

    def _done(self, task: asyncio.Task[None]) -> None:
        self._planning.pop(task, None)
