"""Work handed off after the ack: tracked tasks, failures logged and counted, closed at shutdown."""

from __future__ import annotations

import asyncio
import contextvars
from collections import Counter, deque
from collections.abc import Coroutine
from typing import Any

import structlog

from runtime.observability import BACKGROUND_FAILURES, BACKGROUND_REFUSED, BACKGROUND_WAITING

log = structlog.get_logger(__name__)


class BackgroundTasks:
    """At most ``workers`` pieces of work run at once; the rest wait their turn without touching the database.

    The bound keeps acks fast under a burst: what an ack must write queues behind a few units of work,
    not behind every intent of the burst. Work waiting its turn is kept as it was handed over, not as a task:
    a burst's backlog of thousands of tasks (each with its frames and futures) would make every full collection
    of the cyclic collector walk them, tens of milliseconds during which no ack is written.

    The work waiting is not bounded: each piece is what an ack handed over (an intent to plan, a click to decide,
    a question to answer), which a person waits on in Slack and which, dropped, would leave them waiting while
    this process lives (what was stored is carried on by others only once its lease is gone). A backlog grows
    only while the acks outpace the work, each ack a write to the store, and costs a coroutine a piece: it is
    shown, not cut (``aios_background_waiting``).
    """

    def __init__(self, workers: int = 4) -> None:
        self._workers = workers
        self._tasks: set[asyncio.Task[None]] = set()
        # With the context it was handed over in (an ack's trace, say), which its task runs in once started.
        self._waiting: deque[tuple[Coroutine[Any, Any, None], str, contextvars.Context]] = deque()
        self._closing = False

    def spawn(self, work: Coroutine[Any, Any, None], *, name: str) -> None:
        if self._closing:
            # The stores, clients and connectors it would use are being closed.
            work.close()  # never started: closed, rather than warned about as never awaited
            BACKGROUND_REFUSED.inc()
            log.warning("background_work_refused", work=name)
            return
        if len(self._tasks) < self._workers:
            self._start(work, name, contextvars.copy_context())
        else:
            self._waiting.append((work, name, contextvars.copy_context()))
            BACKGROUND_WAITING.inc()

    async def drain(self, timeout_seconds: float = 30.0) -> None:
        """Wait until the work handed over, and any it hands over meanwhile, has run; work may be handed over
        after. Raises TimeoutError if that takes longer than ``timeout_seconds``."""
        async with asyncio.timeout(timeout_seconds):
            while self._tasks:
                await asyncio.wait(set(self._tasks))

    async def close(self, grace_seconds: float = 30.0, cancel_seconds: float = 5.0) -> bool:
        """At shutdown, before what the work uses is closed and this process's lease is released: work handed
        over from now on is refused; work in flight and waiting is waited for, at most ``grace_seconds``. Then
        what has not started is dropped, and what still runs is cancelled and waited for, at most
        ``cancel_seconds``: once the lease is released another process may take that work over, and must not
        while it still runs here. Both are logged: recovery carries on from the store what was stored
        (intents, clicks, runs, executions), not what lived only here (a late answer, a control command's reply).

        Returns whether every piece of work has ended; if not, the lease must be kept until the process ends.
        """
        self._closing = True
        loop = asyncio.get_running_loop()
        deadline = loop.time() + grace_seconds
        while self._tasks and loop.time() < deadline:
            await asyncio.wait(set(self._tasks), timeout=deadline - loop.time())
        dropped = Counter(name for _, name, _ in self._waiting)
        while self._waiting:
            work, _, _ = self._waiting.popleft()
            BACKGROUND_WAITING.dec()
            work.close()  # never started: closed, rather than warned about as never awaited
        if dropped:
            log.warning("background_work_dropped", grace_seconds=grace_seconds, work=dict(dropped))
        if not self._tasks:
            return True
        running = set(self._tasks)
        log.warning(
            "background_work_cancelled",
            grace_seconds=grace_seconds,
            work=dict(Counter(task.get_name() for task in running)),
        )
        for task in running:
            task.cancel()
        _, still = await asyncio.wait(running, timeout=cancel_seconds)
        if still:
            log.error(
                "background_work_not_ended",
                cancel_seconds=cancel_seconds,
                work=dict(Counter(task.get_name() for task in still)),
            )
            return False
        return True

    def _start(self, work: Coroutine[Any, Any, None], name: str, context: contextvars.Context) -> None:
        task = asyncio.get_running_loop().create_task(self._guard(work, name), name=name, context=context)
        # The loop keeps only weak references to tasks; hold one until the task is done.
        self._tasks.add(task)
        task.add_done_callback(self._next)

    def _next(self, done: asyncio.Task[None]) -> None:
        self._tasks.discard(done)
        if self._waiting and len(self._tasks) < self._workers:
            BACKGROUND_WAITING.dec()
            self._start(*self._waiting.popleft())

    async def _guard(self, work: Coroutine[Any, Any, None], name: str) -> None:
        try:
            await work
        except Exception:
            BACKGROUND_FAILURES.inc()
            log.exception("background_work_failed", work=name)
