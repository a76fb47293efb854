"""Work handed off after the ack: tracked tasks, failures logged and counted, drained on shutdown."""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any

import structlog

from runtime.observability import BACKGROUND_FAILURES

log = structlog.get_logger(__name__)


class BackgroundTasks:
    """At most ``workers`` pieces of work run at once; the rest wait their turn without touching the database.

    The bound keeps acks fast under a burst: what an ack must write queues behind a few units of work,
    not behind every intent of the burst.
    """

    def __init__(self, workers: int = 4) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._workers = asyncio.Semaphore(workers)

    def spawn(self, work: Coroutine[Any, Any, None], *, name: str) -> None:
        task = asyncio.get_running_loop().create_task(self._guard(work, name), name=name)
        # The loop keeps only weak references to tasks; hold one until the task is done.
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self, grace_seconds: float = 30.0) -> None:
        """Wait for work in flight (at shutdown), at most ``grace_seconds``."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=grace_seconds)

    async def _guard(self, work: Coroutine[Any, Any, None], name: str) -> None:
        try:
            async with self._workers:
                await work
        except Exception:
            BACKGROUND_FAILURES.inc()
            log.exception("background_work_failed", work=name)
