"""Liveness leases: a live process's work is left to it; the work of a process that is gone is carried on at
once, by one survivor, without waiting out the grace period."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

import asyncpg
import pytest
import structlog
from sqlalchemy.engine import make_url
from sqlmodel import col, select

from agents.dispatcher import DISPATCHER
from bot.bootstrap import EXIT_WORK_NOT_ENDED, Aios, close_or_exit
from connectors.sandbox_state import sandbox_state
from runtime.intake import IncomingIntent
from runtime.messagebus import Message
from runtime.messages import ReconcileExecution, Recover
from storage.leases import LEASE_LOCK_CLASS
from storage.records import ActionStatus, Execution, Intent, Run, utcnow
from tests.conftest import Clock
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import CHANNEL, REQUESTER, ask, start_aios


def mention(text: str, ts: str) -> IncomingIntent:
    return IncomingIntent(
        source="mention", team_id="T", channel=CHANNEL, thread_ts=ts, user=REQUESTER, text=text
    )


async def run_stopped_while_planning(aios: Aios, text: str, owner: int | None) -> int:
    """What a process that stops right after starting a run leaves: the intent claimed, the run planning."""
    intent_id = await aios.accept(mention(text, "1.2"))
    assert intent_id is not None
    async with aios.units() as uow:
        assert await uow.runs.claim_intent(intent_id)
        run = await uow.add(Run(intent_id=intent_id, agent=DISPATCHER, owner=owner))
        await uow.commit()
    assert run.id is not None
    return run.id


async def execution_stopped_after_the_connector(aios: Aios, text: str) -> None:
    """What a process that stops after the connector did the work leaves: the execution still in flight."""
    await ask(aios, text, thread_ts="1.3")
    async with aios.units() as uow:
        execution = (await uow.session.exec(select(Execution))).one()
        assert execution.owner == aios.lease.id
        execution.status = "started"
        uow.session.add(execution)
        await uow.runs.set_action_status(execution.action_id, ActionStatus.APPROVED)
        await uow.commit()


async def state(aios: Aios) -> tuple[list[str], list[str], list[str], list[int]]:
    """Intent, run and execution statuses, and the orders refunded."""
    async with aios.units() as uow:
        session = uow.session
        intents = [i.status for i in (await session.exec(select(Intent).order_by(col(Intent.id)))).all()]
        runs = [r.status for r in (await session.exec(select(Run).order_by(col(Run.id)))).all()]
        executions = [e.status for e in (await session.exec(select(Execution))).all()]
    refunds = sorted(int(str(r["order_id"])) for r in (await sandbox_state(aios.units))["refunds"])
    return intents, runs, executions, refunds


async def test_a_live_process_keeps_its_work_and_a_stopped_ones_is_carried_on_at_once(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    first = await start_aios(database_url, slack_api, clock, tmp_path)
    second = await start_aios(database_url, slack_api, clock, tmp_path)
    third = await start_aios(database_url, slack_api, clock, tmp_path)
    try:
        await execution_stopped_after_the_connector(first, "refund $7 on order 1004, late")
        await first.accept(mention("refund $5 on order 1002, late", "1.1"))
        await run_stopped_while_planning(first, "refund $6 on order 1003, scuffed", owner=first.lease.id)
        left = await state(first)
        assert left == (
            ["dispatched", "received", "dispatched"],
            ["executing", "planning"],
            ["started"],
            [1004],
        )

        await second.recover()  # at start
        await second.background.drain()
        await second.take_over_from_the_dead()  # and every few seconds
        assert await state(first) == left  # the grace period (60 s) never comes into it: first is alive

        await first.close()
        await asyncio.gather(second.take_over_from_the_dead(), third.take_over_from_the_dead())

        # Each once, by one of the two: the refund that landed before the stop is not made again.
        assert await state(second) == (
            ["dispatched"] * 3,
            ["completed"] * 3,
            ["succeeded"] * 3,
            [1002, 1003, 1004],
        )
    finally:
        await second.close()
        await third.close()


async def test_work_that_names_no_owner_keeps_the_grace_period(aios: Aios) -> None:
    run_id = await run_stopped_while_planning(aios, "refund $6 on order 1003, scuffed", owner=None)

    await aios.take_over_from_the_dead()
    assert (await state(aios))[1] == ["planning"]  # younger than the grace period: maybe a live replica's

    async with aios.units() as uow:
        run = await uow.get(Run, run_id)
        assert run is not None
        run.updated_at = utcnow() - timedelta(seconds=aios.settings.recovery_grace_seconds + 1)
        uow.session.add(run)
        await uow.commit()
    await aios.take_over_from_the_dead()
    assert (await state(aios))[1:4] == (["completed"], ["succeeded"], [1003])


@pytest.mark.postgres
async def test_a_lease_whose_connection_is_lost_is_taken_again(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    if not database_url.startswith("postgresql"):
        pytest.skip("an advisory lock lives on a PostgreSQL connection")
    first = await start_aios(database_url, slack_api, clock, tmp_path)
    second = await start_aios(database_url, slack_api, clock, tmp_path)
    try:
        assert await second.lease.alive([first.lease.id]) == {first.lease.id}
        connection = await asyncpg.connect(
            make_url(database_url).set(drivername="postgresql").render_as_string(False)
        )
        try:
            await connection.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                "AND classid::bigint = $1 AND objid::bigint = $2",
                LEASE_LOCK_CLASS,
                first.lease.id,
            )
        finally:
            await connection.close()
        for _ in range(50):  # the server ends the session a moment after it is told to
            if not await second.lease.alive([first.lease.id]):
                break
            await asyncio.sleep(0.1)
        assert await second.lease.alive([first.lease.id]) == set()

        await first.lease.keep()
        assert await second.lease.alive([first.lease.id]) == {first.lease.id}
    finally:
        await first.close()
        await second.close()


async def test_one_piece_of_stranded_work_that_fails_does_not_strand_the_others(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    """Two executions in flight when their process stopped; carrying on the first fails (its database
    connection drops, say): the second is still carried on by the same recovery, not left owned by a live
    process that would never come back to it."""
    first = await start_aios(database_url, slack_api, clock, tmp_path)
    second = await start_aios(database_url, slack_api, clock, tmp_path)
    try:
        await execution_stopped_after_the_connector(first, "refund $7 on order 1004, late")
        await ask(first, "refund $8 on order 1005, late", thread_ts="1.5")
        async with first.units() as uow:
            executions = (await uow.session.exec(select(Execution).order_by(col(Execution.id)))).all()
            for execution in executions:
                execution.status = "started"
                uow.session.add(execution)
                await uow.runs.set_action_status(execution.action_id, ActionStatus.APPROVED)
            await uow.commit()
        failing = executions[0].id
        await first.close()

        # The fault goes in at the bus (which has its own tests): the handler of one recovered step fails.
        reconcile = second.handlers.execution.reconcile

        async def reconcile_failing_once(command: ReconcileExecution) -> Sequence[Message]:
            if command.execution_id == failing:
                raise ConnectionError("the database connection dropped")
            return await reconcile(command)

        second.bus._command_handlers[ReconcileExecution] = reconcile_failing_once
        await second.take_over_from_the_dead()
        assert (await state(second))[2:] == (["started", "succeeded"], [1004, 1005])
    finally:
        await second.close()


async def test_work_still_running_when_the_grace_period_ends_is_cancelled_before_the_lease_goes(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    first = await start_aios(database_url, slack_api, clock, tmp_path)
    second = await start_aios(database_url, slack_api, clock, tmp_path)
    try:
        hung = asyncio.Event()
        lease_held_while_it_ended: list[set[int]] = []

        async def remote_call_that_hangs() -> None:
            try:
                await hung.wait()
            except asyncio.CancelledError:
                lease_held_while_it_ended.append(await second.lease.alive([first.lease.id]))
                raise

        first.background.spawn(remote_call_that_hangs(), name="hangs")
        await asyncio.sleep(0)
        with structlog.testing.capture_logs() as logged:
            closing = asyncio.create_task(first.close(grace_seconds=0.3))
            await asyncio.sleep(0.1)
            # Handed over once the shutdown began: the store, clients and connectors it would use are closing.
            first.submit(Recover(grace_seconds=0))
            await closing
        # Ended while the lease was still held, so no other process could have taken the work over meanwhile.
        assert lease_held_while_it_ended == [{first.lease.id}]
        assert await second.lease.alive([first.lease.id]) == set()
        assert [e["work"] for e in logged if e["event"] == "background_work_cancelled"] == [{"hangs": 1}]
        assert [e["work"] for e in logged if e["event"] == "background_work_refused"] == ["Recover"]
    finally:
        await second.close()


async def deaf_to_cancellation(let_go: asyncio.Event) -> None:
    """Work that will not end when cancelled, only once let go."""
    while not let_go.is_set():
        with contextlib.suppress(asyncio.CancelledError):
            await let_go.wait()


async def test_work_that_will_not_end_keeps_the_lease_until_the_process_ends(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    first = await start_aios(database_url, slack_api, clock, tmp_path)
    second = await start_aios(database_url, slack_api, clock, tmp_path)
    let_go = asyncio.Event()
    try:
        first.background.spawn(deaf_to_cancellation(let_go), name="deaf")
        await asyncio.sleep(0)
        with structlog.testing.capture_logs() as logged:
            await first.close(grace_seconds=0.05, cancel_seconds=0.1)
        assert [
            e["event"]
            for e in logged
            if e["event"] in ("background_work_not_ended", "lease_kept_at_shutdown")
        ] == [
            "background_work_not_ended",
            "lease_kept_at_shutdown",
        ]
        # Still running here, so not anyone's to carry on: its lease goes with the process.
        assert await second.lease.alive([first.lease.id]) == {first.lease.id}
    finally:
        let_go.set()
        await first.background.drain()
        await first.lease.release()
        await second.close()


async def test_a_long_running_process_whose_work_will_not_end_exits_rather_than_wait_for_it(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """asyncio.run would cancel the work again and wait for it with no limit: the process would live on with its
    lease, and no other process could take its work over."""

    class Exited(Exception):
        pass

    def exit_now(status: int) -> None:
        raise Exited(status)

    monkeypatch.setattr(os, "_exit", exit_now)
    ended_well = await start_aios(database_url, slack_api, clock, tmp_path)
    await close_or_exit(ended_well)  # nothing left running: no exit, the lease released
    stuck = await start_aios(database_url, slack_api, clock, tmp_path)
    let_go = asyncio.Event()

    stuck.background.spawn(deaf_to_cancellation(let_go), name="deaf")
    await asyncio.sleep(0)
    try:
        with structlog.testing.capture_logs() as logged, pytest.raises(Exited) as exited:
            try:
                raise RuntimeError("the worker's loop failed")
            finally:  # as the long-running commands call it
                await close_or_exit(stuck, grace_seconds=0.05, cancel_seconds=0.1)
        assert exited.value.args == (EXIT_WORK_NOT_ENDED,)
        # The error the process stopped on is said before the exit, which would lose it.
        [said] = [e for e in logged if e["event"] == "stopped_by_error"]
        assert "the worker's loop failed" in str(said["exc_info"])
    finally:
        let_go.set()
        await stuck.background.drain()
        await stuck.lease.release()  # as the process's end would


async def test_a_sweep_that_finds_nothing_says_so_only_at_debug_level(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    """Every few seconds a sweep usually finds nothing: an info line each time would bury the ones that matter."""
    aios = await start_aios(database_url, slack_api, clock, tmp_path)
    try:
        with structlog.testing.capture_logs() as logged:
            await aios.process(Recover(grace_seconds=0))  # as at start
            await aios.take_over_from_the_dead()
        levels = [e["log_level"] for e in logged if e["event"] == "recovering"]
        assert levels == ["info", "debug"]
    finally:
        await aios.close()
