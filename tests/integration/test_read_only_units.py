"""Read-only units of work, reads that share one transaction, and the one-statement writes planning makes: a
run's status computed from its actions in SQL, an intent claimed with its row, its thread's open escalation and
whether any agent is paused returned, a card's message."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import event, update
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.pool import QueuePool
from sqlalchemy.util import await_
from sqlmodel import col, select

from storage.records import (
    ActionStatus,
    AgentPause,
    Approval,
    Decision,
    Escalation,
    EscalationStatus,
    Intent,
    IntentStatus,
    ProposedAction,
    Run,
    RunStatus,
)
from storage.unit_of_work import UnitOfWorkFactory, awaiting_remote, reading_together


def sent_statements(engine: AsyncEngine) -> list[str]:
    """The first word of every statement sent from now on, BEGIN and COMMIT left out."""
    sent: list[str] = []

    def on_statement(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not statement.startswith(("BEGIN", "COMMIT")):
            sent.append(statement.split()[0])

    event.listen(engine.sync_engine, "before_cursor_execute", on_statement)
    return sent


def connections_held(engine: AsyncEngine) -> int:
    """Connections out of the engine's pool: one for each session in a transaction."""
    assert isinstance(engine.pool, QueuePool)
    return engine.pool.checkedout()


def begun(engine: AsyncEngine) -> list[str]:
    """ "begin" for every transaction begun from now on."""
    sent: list[str] = []
    event.listen(engine.sync_engine, "begin", lambda _connection: sent.append("begin"))
    return sent


async def an_intent(units: UnitOfWorkFactory, *, thread_ts: str | None = "1.0") -> int:
    async with units() as uow:
        intent = await uow.add(
            Intent(source="slack", team_id="T0", channel="C0", thread_ts=thread_ts, user="U0", text="hi")
        )
        await uow.commit()
    assert intent.id is not None
    return intent.id


async def test_a_read_waits_for_no_writer_and_sees_only_what_was_committed(engine: AsyncEngine) -> None:
    units = UnitOfWorkFactory.for_engine(engine)
    intent_id = await an_intent(units)
    async with units() as writer:
        stored = await writer.get(Intent, intent_id)
        assert stored is not None
        stored.text = "changed, not committed"
        writer.session.add(stored)
        await writer.session.flush()
        # A write unit of work here would wait for the one above (the writer lock) for ever.
        async with asyncio.timeout(10), units.read() as reader:
            read = await reader.get(Intent, intent_id)
        assert read is not None and read.text == "hi"


async def test_a_read_only_unit_of_work_cannot_commit_nor_write_on_postgresql(engine: AsyncEngine) -> None:
    units = UnitOfWorkFactory.for_engine(engine)
    async with units.read() as uow:
        with pytest.raises(RuntimeError, match="nothing to commit"):
            await uow.commit()
    if engine.dialect.name != "postgresql":
        return
    with pytest.raises(DBAPIError, match="read-only transaction"):
        async with units.read() as uow:
            await uow.add(Intent(source="slack", team_id="T0", channel="C0", user="U0", text="no"))


async def test_reads_begin_without_the_write_lock_on_sqlite(engine: AsyncEngine) -> None:
    if engine.dialect.name != "sqlite":
        pytest.skip("SQLite's BEGIN IMMEDIATE is what a read leaves out")
    units = UnitOfWorkFactory.for_engine(engine)
    intent_id = await an_intent(units)
    sent: list[str] = []

    def traced(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        # What SQLite itself runs: BEGIN goes to the driver's connection directly, not through a cursor.
        await_(dbapi_connection.driver_connection.set_trace_callback(sent.append))

    event.listen(engine.sync_engine.pool, "checkout", traced)
    async with units.read() as uow:
        await uow.get(Intent, intent_id)
    async with units() as uow:
        await uow.get(Intent, intent_id)
    assert [s for s in sent if s.startswith("BEGIN")] == ["BEGIN", "BEGIN IMMEDIATE"]


async def test_reads_together_share_one_transaction_and_it_ends_with_them(engine: AsyncEngine) -> None:
    units = UnitOfWorkFactory.for_engine(engine)
    intent_id = await an_intent(units)
    sent = begun(engine)
    async with reading_together():
        for _ in range(3):
            async with units.read() as uow:
                assert await uow.get(Intent, intent_id) is not None
        async with units() as uow:  # a write beside them has its own transaction, and commits
            stored = await uow.get(Intent, intent_id)
            assert stored is not None
            stored.text = "written beside the reads"
            uow.session.add(stored)
            await uow.commit()
    assert sent.count("begin") == 2
    async with units.read() as uow:
        read = await uow.get(Intent, intent_id)
    assert read is not None and read.text == "written beside the reads"
    assert sent.count("begin") == 3


async def test_reads_together_see_one_snapshot_not_a_write_committed_meanwhile(engine: AsyncEngine) -> None:
    units = UnitOfWorkFactory.for_engine(engine)
    intent_id = await an_intent(units)
    stored_text = select(Intent.text).where(Intent.id == intent_id)
    async with reading_together():
        async with units.read() as uow:
            first = (await uow.session.exec(stored_text)).one()
        async with units() as uow:
            await uow.session.exec(update(Intent).where(col(Intent.id) == intent_id).values(text="changed"))
            await uow.commit()
        async with units.read() as uow:
            assert (await uow.session.exec(stored_text)).one() == first != "changed"
    async with units.read() as uow:
        assert (await uow.session.exec(stored_text)).one() == "changed"


async def test_a_remote_call_ends_the_shared_read_and_the_reads_after_it_share_another(
    engine: AsyncEngine,
) -> None:
    units = UnitOfWorkFactory.for_engine(engine)
    intent_id = await an_intent(units)
    sent = begun(engine)
    async with reading_together():
        async with units.read() as uow:
            assert await uow.get(Intent, intent_id) is not None
        assert connections_held(engine) == 1  # the shared transaction's connection, kept for the next read
        async with awaiting_remote():
            assert connections_held(engine) == 0
        for _ in range(2):
            async with units.read() as uow:
                assert await uow.get(Intent, intent_id) is not None
    assert sent.count("begin") == 2
    assert connections_held(engine) == 0


async def test_a_read_beside_a_remote_call_has_a_transaction_of_its_own_ended_with_it(
    engine: AsyncEngine,
) -> None:
    units = UnitOfWorkFactory.for_engine(engine)
    intent_id = await an_intent(units)
    calling, answered = asyncio.Event(), asyncio.Event()

    async def remote_call() -> None:
        async with awaiting_remote():
            calling.set()
            await answered.wait()

    async with reading_together():
        call = asyncio.create_task(remote_call())
        await calling.wait()
        async with units.read() as uow:
            assert await uow.get(Intent, intent_id) is not None
        assert connections_held(engine) == 0
        answered.set()
        await call


async def test_a_read_queued_behind_a_remote_call_for_its_turn_does_not_open_a_shared_transaction(
    engine: AsyncEngine,
) -> None:
    """A remote call waits for its turn (another task is reading) to end the shared transaction; a read that
    arrives meanwhile, and gets its turn after the call's, must not begin a new shared one that would stay open
    throughout the call."""
    units = UnitOfWorkFactory.for_engine(engine)
    intent_id = await an_intent(units)
    reading, finish_reading, calling, answered = (asyncio.Event() for _ in range(4))
    held_during_call: list[int] = []

    async def long_read() -> None:
        async with units.read() as uow:
            assert await uow.get(Intent, intent_id) is not None
            reading.set()
            await finish_reading.wait()

    async def remote_call() -> None:
        async with awaiting_remote():
            calling.set()
            await answered.wait()

    async def read_beside() -> None:
        async with units.read() as uow:
            assert await uow.get(Intent, intent_id) is not None

    async with reading_together():
        first = asyncio.create_task(long_read())
        await reading.wait()
        call = asyncio.create_task(remote_call())
        beside = asyncio.create_task(read_beside())
        await asyncio.sleep(0)  # both now wait for the long read's turn
        finish_reading.set()
        await asyncio.gather(first, beside, calling.wait())
        held_during_call.append(connections_held(engine))
        answered.set()
        await call
    assert held_during_call == [0]


async def test_an_intent_is_claimed_with_its_row_once_it_has_a_thread(engine: AsyncEngine) -> None:
    units = UnitOfWorkFactory.for_engine(engine)
    threadless, threaded = await an_intent(units, thread_ts=None), await an_intent(units)
    async with units() as uow:
        assert await uow.runs.claim_intent_in_thread(threadless) is None
        claimed = await uow.runs.claim_intent_in_thread(threaded)
        await uow.commit()
    assert claimed is not None
    intent = claimed.intent
    assert intent.id == threaded and intent.text == "hi"
    assert intent.status == IntentStatus.DISPATCHED and intent.thread_ts == "1.0"
    async with units() as uow:
        assert await uow.runs.claim_intent_in_thread(threaded) is None  # claimed once
        assert await uow.runs.claim_intent(threadless)  # still received


async def test_an_intents_claim_says_in_the_same_statement_what_its_thread_and_the_agents_wait_for(
    engine: AsyncEngine,
) -> None:
    """The escalation its thread has open (the newest; none closed, none of another thread) and whether any agent
    is paused come back with the claimed intent: starting its run reads neither again."""
    units = UnitOfWorkFactory.for_engine(engine)
    quiet, answering = await an_intent(units, thread_ts="2.0"), await an_intent(units)
    escalations: list[Escalation] = []
    waiting = EscalationStatus.OPEN
    async with units() as uow:
        for channel, status in (
            ("C0", waiting),
            ("C0", waiting),
            ("C1", waiting),
            ("C0", EscalationStatus.ANSWERED),
        ):
            run = await uow.add(Run(intent_id=answering, agent="returns"))
            assert run.id is not None
            asked = Escalation(
                run_id=run.id,
                agent="returns",
                reason="r",
                question="q",
                channel=channel,
                thread_ts="1.0",
                status=status,
            )
            escalations.append(await uow.add(asked))
        await uow.commit()
    sent = sent_statements(engine)
    async with units() as uow:
        first = await uow.runs.claim_intent_in_thread(quiet)
        second = await uow.runs.claim_intent_in_thread(answering)
        await uow.commit()
    assert sent == ["UPDATE", "UPDATE"]
    assert first is not None and (first.open_escalation, first.agents_paused) == (None, False)
    assert second is not None and (second.open_escalation, second.agents_paused) == (escalations[1].id, False)

    paused_later = await an_intent(units, thread_ts="3.0")
    async with units() as uow:
        await uow.add(AgentPause(agent="content", paused_by="U0"))
        claimed = await uow.runs.claim_intent_in_thread(paused_later)
        await uow.commit()
    assert claimed is not None and claimed.agents_paused


@pytest.mark.parametrize(
    ("statuses", "expected"),
    [
        ((), RunStatus.DENIED),
        ((ActionStatus.EXECUTED, ActionStatus.AWAITING_APPROVAL), RunStatus.AWAITING_APPROVAL),
        ((ActionStatus.FAILED, ActionStatus.APPROVED), RunStatus.EXECUTING),
        ((ActionStatus.DENIED, ActionStatus.PROPOSED), RunStatus.EXECUTING),
        ((ActionStatus.EXECUTED, ActionStatus.FAILED), RunStatus.FAILED),
        ((ActionStatus.REJECTED, ActionStatus.EXECUTED), RunStatus.COMPLETED),
        ((ActionStatus.DENIED, ActionStatus.EXPIRED), RunStatus.REJECTED),
        ((ActionStatus.DENIED, ActionStatus.COMPENSATED), RunStatus.DENIED),
    ],
)
async def test_a_run_takes_the_status_its_actions_make_in_one_update(
    engine: AsyncEngine, statuses: tuple[ActionStatus, ...], expected: RunStatus
) -> None:
    units = UnitOfWorkFactory.for_engine(engine)
    intent_id = await an_intent(units)
    async with units() as uow:
        run = await uow.add(Run(intent_id=intent_id, agent="returns", status=RunStatus.PLANNING))
        assert run.id is not None
        for status in statuses:
            await uow.add(ProposedAction(run_id=run.id, name="shop.refund", params={}, status=status))
        other = await uow.add(Run(intent_id=intent_id, agent="returns", status=RunStatus.PLANNING))
        assert other.id is not None
        await uow.add(
            ProposedAction(run_id=other.id, name="shop.refund", params={}, status=ActionStatus.EXECUTED)
        )
        sent = sent_statements(engine)
        await uow.runs.refresh_run_status(run.id, rationale="judged")
        assert sent == ["UPDATE"]
        # The copy of the run the session holds says what the database now does.
        assert (run.status, run.rationale) == (expected, "judged")
        await uow.commit()
    async with units.read() as uow:
        stored, untouched = await uow.get(Run, run.id), await uow.get(Run, other.id)
    assert stored is not None and (stored.status, stored.rationale) == (expected, "judged")
    assert untouched is not None and untouched.status == RunStatus.PLANNING


async def test_a_cards_message_is_stored_in_one_statement_past_the_audit(engine: AsyncEngine) -> None:
    units = UnitOfWorkFactory.for_engine(engine)
    intent_id = await an_intent(units)
    async with units() as uow:
        run = await uow.add(Run(intent_id=intent_id, agent="returns"))
        assert run.id is not None
        action = await uow.add(ProposedAction(run_id=run.id, name="shop.refund", params={}))
        assert action.id is not None
        decision = await uow.add(
            Decision(action_id=action.id, kind="policy", verdict="require_approval", actor="policy")
        )
        assert decision.id is not None
        approval = await uow.add(
            Approval(
                action_id=action.id,
                decision_id=decision.id,
                approver_roles=["manager"],
                requester="U0",
                channel="C0",
            )
        )
        await uow.commit()
    assert approval.id is not None
    sent = sent_statements(engine)
    async with units() as uow:
        await uow.approvals.show_approval_at(approval.id, "1700000000.000100")
        await uow.commit()
    assert sent == ["UPDATE"]  # no read back for the audit: which message shows it is not audited content
    async with units.read() as uow:
        stored = await uow.get(Approval, approval.id)
    assert stored is not None and stored.message_ts == "1700000000.000100"


async def test_a_read_inside_a_read_shares_its_turn_and_a_task_outliving_the_block_reads_alone(
    engine: AsyncEngine,
) -> None:
    units = UnitOfWorkFactory.for_engine(engine)
    intent_id = await an_intent(units)
    go_on = asyncio.Event()

    async def later() -> str | None:
        await go_on.wait()
        async with units.read() as uow:
            intent = await uow.get(Intent, intent_id)
        return intent.text if intent else None

    async with reading_together():
        async with asyncio.timeout(10), units.read() as outer, units.read() as inner:
            assert inner.session is outer.session
            assert await inner.get(Intent, intent_id) is not None
        outliving = asyncio.create_task(later())
    go_on.set()
    async with asyncio.timeout(10):
        assert await outliving == "hi"


async def test_a_task_started_inside_a_shared_read_calls_out_and_reads_without_waiting_for_its_starter(
    engine: AsyncEngine,
) -> None:
    """The starter holds the read turn while it awaits the task: were the task to wait for that turn (to end the
    shared transaction before its call, or to read on it), neither would go on."""
    units = UnitOfWorkFactory.for_engine(engine)
    intent_id = await an_intent(units)

    async def remote_call() -> None:
        async with awaiting_remote():
            pass

    async def read() -> str | None:
        async with units.read() as uow:
            intent = await uow.get(Intent, intent_id)
        return intent.text if intent else None

    async with reading_together(), units.read() as uow:
        assert await uow.get(Intent, intent_id) is not None
        async with asyncio.timeout(10):
            await asyncio.create_task(remote_call())
            assert await asyncio.create_task(read()) == "hi"
        assert await uow.get(Intent, intent_id) is not None  # its transaction is still there to read on
    assert connections_held(engine) == 0


async def test_a_read_still_going_when_the_block_ends_keeps_its_transaction_until_it_ends(
    engine: AsyncEngine,
) -> None:
    """A task started in the block reads on past its end: the shared transaction is ended as that read ends,
    not under it, so the read sees one snapshot throughout and no connection stays out of the pool."""
    units = UnitOfWorkFactory.for_engine(engine)
    intent_id = await an_intent(units)
    stored_text = select(Intent.text).where(Intent.id == intent_id)
    reading, go_on = asyncio.Event(), asyncio.Event()

    async def long_read() -> tuple[str, str]:
        async with units.read() as uow:
            first = (await uow.session.exec(stored_text)).one()
            reading.set()
            await go_on.wait()
            return first, (await uow.session.exec(stored_text)).one()

    async with reading_together():
        still_reading = asyncio.create_task(long_read())
        await reading.wait()
    async with units() as uow:
        await uow.session.exec(update(Intent).where(col(Intent.id) == intent_id).values(text="changed"))
        await uow.commit()
    go_on.set()

    async with asyncio.timeout(10):
        assert await still_reading == ("hi", "hi")
    assert connections_held(engine) == 0


async def test_a_remote_call_made_by_a_task_the_reader_awaits_ends_the_shared_read_as_that_read_ends(
    engine: AsyncEngine,
) -> None:
    """The reader keeps its transaction while it awaits the call (it reads on after it), but the reads after its
    read share a new one, which sees what was written during the call."""
    units = UnitOfWorkFactory.for_engine(engine)
    intent_id = await an_intent(units)
    stored_text = select(Intent.text).where(Intent.id == intent_id)

    async def remote_call() -> None:
        async with awaiting_remote(), units() as uow:  # the other system's answer, written meanwhile
            await uow.session.exec(update(Intent).where(col(Intent.id) == intent_id).values(text="changed"))
            await uow.commit()

    async with reading_together():
        async with units.read() as uow:
            assert (await uow.session.exec(stored_text)).one() == "hi"
            async with asyncio.timeout(10):
                await asyncio.create_task(remote_call())
            assert (await uow.session.exec(stored_text)).one() == "hi"  # its snapshot, still there
        assert connections_held(engine) == 0
        async with units.read() as uow:
            assert (await uow.session.exec(stored_text)).one() == "changed"


async def test_a_remote_call_by_a_task_outlasting_the_read_that_started_it_leaves_no_transaction_open(
    engine: AsyncEngine,
) -> None:
    """The call began during the read, which kept the transaction to read on; once that read ends, nothing waits
    on the call with a transaction open."""
    units = UnitOfWorkFactory.for_engine(engine)
    intent_id = await an_intent(units)
    calling, answered = asyncio.Event(), asyncio.Event()

    async def remote_call() -> None:
        async with awaiting_remote():
            calling.set()
            await answered.wait()

    async with reading_together():
        async with units.read() as uow:
            assert await uow.get(Intent, intent_id) is not None
            call = asyncio.create_task(remote_call())
            await calling.wait()
        held_during_call = connections_held(engine)
        answered.set()
        await call
    assert held_during_call == 0
