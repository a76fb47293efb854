"""Work handed off after the ack: tracked tasks, failures logged and counted, drained on shutdown."""

from __future__ import annotations

import asyncio
import contextvars
from collections import Counter, deque
from collections.abc import Coroutine
from typing import Any

import structlog

from runtime.observability import BACKGROUND_FAILURES

log = structlog.get_logger(__name__)


class BackgroundTasks:
    """At most ``workers`` pieces of work run at once; the rest wait their turn without touching the database.

    The bound keeps acks fast under a burst: what an ack must write queues behind a few units of work,
    not behind every intent of the burst. Work waiting its turn is kept as it was handed over, not as a task:
    a burst's backlog of thousands of tasks (each with its frames and futures) would make every full collection
    of the cyclic collector walk them, tens of milliseconds during which no ack is written.
    """

    def __init__(self, workers: int = 4) -> None:
        self._workers = workers
        self._tasks: set[asyncio.Task[None]] = set()
        # With the context it was handed over in (an ack's trace, say), which its task runs in once started.
        self._waiting: deque[tuple[Coroutine[Any, Any, None], str, contextvars.Context]] = deque()

    def spawn(self, work: Coroutine[Any, Any, None], *, name: str) -> None:
        if len(self._tasks) < self._workers:
            self._start(work, name, contextvars.copy_context())
        else:
            self._waiting.append((work, name, contextvars.copy_context()))

    async def drain(self, grace_seconds: float = 30.0) -> None:
        """Wait for work in flight and waiting (at shutdown), at most ``grace_seconds``; what has not started by
        then is dropped, and logged: recovery carries on from the store what was stored (intents, clicks, runs,
        executions), not what lived only here (a late answer, a control command's reply)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_seconds
        while self._tasks and loop.time() < deadline:
            await asyncio.wait(set(self._tasks), timeout=deadline - loop.time())
        dropped = Counter(name for _, name, _ in self._waiting)
        while self._waiting:
            work, _, _ = self._waiting.popleft()
            work.close()  # never started: closed, rather than warned about as never awaited
        if dropped:
            log.warning("background_work_dropped", grace_seconds=grace_seconds, work=dict(dropped))

    def _start(self, work: Coroutine[Any, Any, None], name: str, context: contextvars.Context) -> None:
        task = asyncio.get_running_loop().create_task(self._guard(work, name), name=name, context=context)
        # The loop keeps only weak references to tasks; hold one until the task is done.
        self._tasks.add(task)
        task.add_done_callback(self._next)

    def _next(self, done: asyncio.Task[None]) -> None:
        self._tasks.discard(done)
        if self._waiting and len(self._tasks) < self._workers:
            self._start(*self._waiting.popleft())

    async def _guard(self, work: Coroutine[Any, Any, None], name: str) -> None:
        try:
            await work
        except Exception:
            BACKGROUND_FAILURES.inc()
            log.exception("background_work_failed", work=name)
