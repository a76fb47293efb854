"""Background work: a few pieces at a time, in the order handed over, each in the context it was handed over
in; what waits its turn is not a task yet (and is counted); at shutdown, what is handed over is refused, and
what does not end within the grace period is dropped or cancelled before close returns."""

from __future__ import annotations

import asyncio
import contextlib
import contextvars

import structlog
from prometheus_client import REGISTRY

from runtime.background import BackgroundTasks

REQUEST = contextvars.ContextVar[str]("request")


def waiting() -> float:
    return REGISTRY.get_sample_value("aios_background_waiting") or 0.0


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


async def test_what_has_not_started_when_the_grace_period_ends_is_dropped_unawaited_and_what_runs_is_cancelled() -> (
    None
):
    background = BackgroundTasks(workers=1)
    never = asyncio.Event()
    started: list[int] = []
    cancelled: list[int] = []

    async def work(n: int) -> None:
        started.append(n)
        try:
            await never.wait()
        except asyncio.CancelledError:
            cancelled.append(n)
            raise

    waiting_before = waiting()
    for n in range(3):
        background.spawn(work(n), name="work")
    with structlog.testing.capture_logs() as logged:
        assert await background.close(grace_seconds=0.05)
    assert started == [0]
    [dropped] = [e for e in logged if e["event"] == "background_work_dropped"]
    assert dropped["work"] == {"work": 2}  # said, as what lived only in this process is lost with it
    # Ended before close returns (and the lease is released): no other process takes over work still running.
    assert cancelled == [0]
    [stopped] = [e for e in logged if e["event"] == "background_work_cancelled"]
    assert stopped["work"] == {"work": 1}
    assert waiting() == waiting_before


async def test_work_that_will_not_end_when_cancelled_is_said_and_waited_for_no_longer() -> None:
    background = BackgroundTasks()
    let_go = asyncio.Event()

    async def stubborn() -> None:
        while not let_go.is_set():
            with contextlib.suppress(asyncio.CancelledError):
                await let_go.wait()

    background.spawn(stubborn(), name="stubborn")
    await asyncio.sleep(0)
    with structlog.testing.capture_logs() as logged:
        assert not await background.close(grace_seconds=0.01, cancel_seconds=0.05)
    [left] = [e for e in logged if e["event"] == "background_work_not_ended"]
    assert left["work"] == {"stubborn": 1}
    let_go.set()
    await background.drain()


async def test_work_handed_over_once_the_shutdown_began_is_refused_and_never_runs() -> None:
    background = BackgroundTasks()
    finish = asyncio.Event()
    ran: list[str] = []

    async def in_flight() -> None:
        await finish.wait()
        ran.append("in flight")

    async def late() -> None:
        ran.append("late")

    background.spawn(in_flight(), name="in_flight")
    refused_before = REGISTRY.get_sample_value("aios_background_refused_total") or 0
    with structlog.testing.capture_logs() as logged:
        closing = asyncio.create_task(background.close(grace_seconds=5))
        await asyncio.sleep(0)  # the shutdown has begun: it waits for the work in flight
        background.spawn(late(), name="late_answer")
        finish.set()
        assert await closing
    assert ran == ["in flight"]
    [refused] = [e for e in logged if e["event"] == "background_work_refused"]
    assert refused["work"] == "late_answer"
    assert REGISTRY.get_sample_value("aios_background_refused_total") == refused_before + 1


async def test_work_waiting_its_turn_is_counted_until_it_starts() -> None:
    background = BackgroundTasks(workers=1)
    gate = asyncio.Event()

    async def work() -> None:
        await gate.wait()

    before = waiting()
    for _ in range(3):
        background.spawn(work(), name="work")
    assert waiting() == before + 2
    gate.set()
    await background.drain()
    assert waiting() == before
