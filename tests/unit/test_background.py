"""Background work: a few pieces at a time, in the order handed over, each in the context it was handed over
in; what waits its turn is not a task yet; drained at shutdown."""

from __future__ import annotations

import asyncio
import contextvars

import structlog

from runtime.background import BackgroundTasks

REQUEST = contextvars.ContextVar[str]("request")


async def test_work_waiting_its_turn_is_no_task_and_runs_in_order_in_its_own_context() -> None:
    background = BackgroundTasks(workers=2)
    gate = asyncio.Event()
    ran: list[tuple[int, str]] = []

    async def work(n: int) -> None:
        await gate.wait()
        ran.append((n, REQUEST.get()))

    tasks_before = len(asyncio.all_tasks())
    for n in range(10):
        REQUEST.set(f"ack {n}")  # as an ack's trace is set while it hands its work over
        background.spawn(work(n), name="work")
    REQUEST.set("later")
    await asyncio.sleep(0)
    assert len(asyncio.all_tasks()) - tasks_before == 2  # the other eight wait as they were handed over

    gate.set()
    await background.drain()
    assert ran == [(n, f"ack {n}") for n in range(10)]


async def test_a_failure_is_logged_and_the_next_piece_of_work_starts() -> None:
    background = BackgroundTasks(workers=1)
    ran: list[str] = []

    async def fails() -> None:
        raise RuntimeError("boom")

    async def works() -> None:
        ran.append("next")

    background.spawn(fails(), name="fails")
    background.spawn(works(), name="works")
    await background.drain()
    assert ran == ["next"]


async def test_what_has_not_started_when_the_grace_period_ends_is_dropped_unawaited() -> None:
    background = BackgroundTasks(workers=1)
    never = asyncio.Event()
    started: list[int] = []

    async def work(n: int) -> None:
        started.append(n)
        await never.wait()

    for n in range(3):
        background.spawn(work(n), name="work")
    with structlog.testing.capture_logs() as logged:
        await background.drain(grace_seconds=0.05)
    assert started == [0]
    [dropped] = [e for e in logged if e["event"] == "background_work_dropped"]
    assert dropped["work"] == {"work": 2}  # said, as what lived only in this process is lost with it
    never.set()  # the one started goes on to its end
    await background.drain()
    assert started == [0]
