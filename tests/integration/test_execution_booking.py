"""An execution is booked from what its claim read, or after a restart from the stored rows, through one path;
and once: a second booking of the same execution (by a process that took it over) writes nothing."""

from __future__ import annotations

import asyncio
from collections.abc import MutableMapping, Sequence
from pathlib import Path
from typing import Any

import pytest
import structlog
from aiohttp.test_utils import TestClient, TestServer
from slack_sdk.web.async_client import AsyncWebClient
from sqlmodel import delete, select

from bot import memory_setup
from bot.bootstrap import Aios
from bot.slack_app import build_slack_app
from bot.web import build_web_app
from connectors.actions import Action
from connectors.errors import InvalidActionError
from runtime.handlers.execution import action_executed_event
from runtime.messages import DecideApproval, ReconcileExecution
from storage.records import (
    ActionStatus,
    Approval,
    Execution,
    ExecutionAttempt,
    ExecutionStatus,
    Memory,
    ProposedAction,
)
from tests.conftest import Clock
from tests.fakes.slack_api import TOKEN, FakeSlackApi
from tests.fakes.slack_payloads import SIGNING_SECRET, block_action, sign
from tests.integration.conftest import CHANNEL, MANAGER, REQUESTER, ask, start_aios

TEAM = "T0FAKE"


async def approved_refund(aios: Aios) -> Execution:
    await ask(aios, "refund order 1001, $250, arrived broken")
    async with aios.units() as uow:
        approval = (await uow.session.exec(select(Approval))).one()
    assert approval.id is not None
    await aios.process(DecideApproval(approval.id, MANAGER, approve=True, channel=CHANNEL))
    async with aios.units() as uow:
        execution = (await uow.session.exec(select(Execution))).one()
    assert execution.status == ExecutionStatus.SUCCEEDED
    return execution


async def test_an_execution_reconciled_after_a_restart_is_booked_from_the_stored_rows(
    aios: Aios, clock: Clock
) -> None:
    execution = await approved_refund(aios)
    [kept] = await aios.memory.lookup(TEAM, "order:1001")
    assert f"asked by {REQUESTER}, approved by {MANAGER})" in kept.text
    async with aios.units() as uow:
        # As if the process died after the shop refunded and before the execution was booked.
        stored = await uow.get(Execution, execution.id)
        assert stored is not None
        stored.status, stored.result, stored.finished_at = ExecutionStatus.STARTED, {}, None
        uow.session.add(stored)
        await uow.runs.set_action_status(stored.action_id, ActionStatus.APPROVED)
        await uow.session.exec(delete(Memory))
        await uow.commit()
    clock.advance(minutes=5)

    assert execution.id is not None
    await aios.process(ReconcileExecution(execution.id))

    async with aios.units() as uow:
        settled = await uow.get(Execution, execution.id)
        action = await uow.get(ProposedAction, execution.action_id)
    assert settled is not None and settled.status == ExecutionStatus.SUCCEEDED
    assert settled.result["replayed"] is True
    assert action is not None and action.status == ActionStatus.EXECUTED
    [remembered] = await aios.memory.lookup(
        TEAM, "order:1001"
    )  # who asked, who approved: as the claim had it
    assert remembered.text != kept.text
    assert f"asked by {REQUESTER}, approved by {MANAGER})" in remembered.text


async def test_an_execution_booked_by_another_process_first_is_not_booked_again(aios: Aios) -> None:
    execution = await approved_refund(aios)
    assert execution.id is not None
    async with aios.units.read() as uow:
        found = await uow.executions.execution_in_hand(execution.id)
        attempts = (await uow.session.exec(select(ExecutionAttempt))).all()
    assert found is not None
    _, in_hand = found
    late = ExecutionAttempt(execution_id=execution.id, number=9, kind="lookup", outcome="ok")

    async with aios.units() as uow:
        booked = await uow.executions.book(
            in_hand, ExecutionStatus.FAILED, {}, "late", execution.started_at, [late]
        )
        await uow.commit()

    assert booked is None
    async with aios.units.read() as uow:
        settled = await uow.get(Execution, execution.id)
        action = await uow.get(ProposedAction, execution.action_id)
        assert (await uow.session.exec(select(ExecutionAttempt))).all() == attempts
    assert settled is not None
    assert (settled.status, settled.result, settled.error) == (
        ExecutionStatus.SUCCEEDED,
        execution.result,
        None,
    )
    assert action is not None and action.status == ActionStatus.EXECUTED


async def test_a_success_booked_after_a_taken_over_failure_is_what_the_record_says(aios: Aios) -> None:
    """A process that took the execution over booked it failed (its own try failed) while the first process's
    refund was landing: the refund happened, so the first one's success is booked over that failure."""
    execution = await approved_refund(aios)
    assert execution.id is not None
    async with aios.units() as uow:
        stored = await uow.get(Execution, execution.id)
        assert stored is not None
        stored.status, stored.result, stored.finished_at = ExecutionStatus.STARTED, {}, None
        uow.session.add(stored)
        await uow.runs.set_action_status(stored.action_id, ActionStatus.APPROVED)
        await uow.commit()
    async with aios.units.read() as uow:
        found = await uow.executions.execution_in_hand(execution.id)
    assert found is not None
    _, in_hand = found

    async with aios.units() as uow:
        taker = await uow.executions.book(
            in_hand, ExecutionStatus.FAILED, {}, "idempotency key in use", execution.started_at, []
        )
        await uow.commit()
    async with aios.units() as uow:
        first = await uow.executions.book(
            in_hand, ExecutionStatus.SUCCEEDED, execution.result, None, execution.started_at, []
        )
        await uow.commit()

    assert taker is not None and first is not None
    assert (taker.over_failure, first.over_failure) == (False, True)  # told as done after all (Done says so)
    async with aios.units.read() as uow:
        settled = await uow.get(Execution, execution.id)
        action = await uow.get(ProposedAction, execution.action_id)
    assert settled is not None and (settled.status, settled.error) == (ExecutionStatus.SUCCEEDED, None)
    assert action is not None and action.status == ActionStatus.EXECUTED


async def test_an_outcome_told_again_is_remembered_once(aios: Aios, clock: Clock) -> None:
    """Its memory says when the action was done, not when it was told: the same text, stored once."""
    execution = await approved_refund(aios)
    assert execution.id is not None and execution.finished_at is not None
    async with aios.units.read() as uow:
        found = await uow.executions.execution_in_hand(execution.id)
    assert found is not None
    told_again = action_executed_event(found[1], execution.status, execution.result, execution.finished_at)
    assert not told_again.outcome_remembered
    clock.advance(minutes=5)

    await aios.process(told_again)

    assert len(await aios.memory.lookup(TEAM, "order:1001")) == 1


class HeldEmbedder:
    """Vectors of four dimensions; the embedding of a refund's outcome waits until released, as a first call
    loading a local model takes seconds."""

    model = "held-4"

    def __init__(self) -> None:
        self.embedding = asyncio.Event()
        self.released = asyncio.Event()

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if any("refunded $" in text for text in texts):
            self.embedding.set()
            await self.released.wait()
        return [[0.5, 0.5, 0.5, 0.5] for _ in texts]


async def test_the_outcome_is_embedded_before_its_booking_takes_any_lock(
    database_url: str,
    slack_api: FakeSlackApi,
    clock: Clock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """While the refund's memory is embedded, another writer (here one locking the execution's row, which the
    booking updates) goes through at once: nothing of the booking is begun yet. Its memory is kept with the
    booking, vector and all."""
    embedder = HeldEmbedder()
    monkeypatch.setattr(memory_setup, "embedder_for", lambda _settings: embedder)
    aios = await start_aios(database_url, slack_api, clock, tmp_path)
    try:
        await ask(aios, "refund order 1001, $250, arrived broken")
        async with aios.units() as uow:
            approval = (await uow.session.exec(select(Approval))).one()
        assert approval.id is not None
        click = asyncio.create_task(
            aios.process(DecideApproval(approval.id, MANAGER, approve=True, channel=CHANNEL))
        )
        try:
            async with asyncio.timeout(10):
                await embedder.embedding.wait()
            async with asyncio.timeout(5), aios.units() as uow:
                (await uow.session.exec(select(Execution).with_for_update())).one()
                await uow.first_time("written while the outcome is embedded")
                await uow.commit()
        finally:
            embedder.released.set()
            await click

        async with aios.units.read() as uow:
            execution = (await uow.session.exec(select(Execution))).one()
            memory = (await uow.session.exec(select(Memory))).one()
        assert execution.status == ExecutionStatus.SUCCEEDED
        assert memory.key == "order:1001" and memory.vector_model == embedder.model
    finally:
        await aios.close()


REFUSE_MEMORIES = {
    "sqlite": [
        "CREATE TRIGGER refuse_memory BEFORE INSERT ON memory BEGIN SELECT RAISE(ABORT, 'memory refused'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_memory() RETURNS trigger LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE EXCEPTION 'memory refused'; END $$",
        "CREATE TRIGGER refuse_memory BEFORE INSERT ON memory FOR EACH ROW EXECUTE FUNCTION refuse_memory()",
    ],
}


async def booked_without_its_memory(
    aios: Aios, execution: Execution, logged: Sequence[MutableMapping[str, Any]], event: str
) -> None:
    """The action executed, no memory of it written, and the error logged as ``event``."""
    async with aios.units.read() as uow:
        action = await uow.get(ProposedAction, execution.action_id)
        memories = (await uow.session.exec(select(Memory))).all()
    assert action is not None and action.status == ActionStatus.EXECUTED
    assert memories == []
    [failed] = [e for e in logged if e["event"] == event]
    assert failed["action"] == execution.action_id and failed["log_level"] == "error"


async def test_an_outcome_memory_the_database_refuses_leaves_the_booking_to_land(aios: Aios) -> None:
    """The shop refunded: the booking must land even though writing its memory fails with a database error (on
    PostgreSQL one that spoils the transaction). The failure is logged."""
    async with aios.engine.begin() as connection:
        for statement in REFUSE_MEMORIES[aios.engine.dialect.name]:
            await connection.exec_driver_sql(statement)

    with structlog.testing.capture_logs() as logged:
        execution = await approved_refund(aios)

    await booked_without_its_memory(aios, execution, logged, "outcome_not_remembered_with_its_booking")


async def test_an_outcome_whose_memory_cannot_be_made_is_booked_without_it(
    aios: Aios, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The shop refunded, and then the connector's schema changed (an upgrade): the stored parameters no longer
    validate, so the outcome's memory cannot be written. The booking lands without it, and the log says why."""
    registry, execute = aios.registry, aios.registry.execute

    def changed_schema(name: str, _params: object) -> Action:
        raise InvalidActionError(f"{name}: reason: field required")

    async def execute_then_upgrade(action: Action, key: str) -> dict[str, object]:
        result = await execute(action, key)
        monkeypatch.setattr(registry, "validate", changed_schema)
        return result

    monkeypatch.setattr(registry, "execute", execute_then_upgrade)
    with structlog.testing.capture_logs() as logged:
        execution = await approved_refund(aios)

    await booked_without_its_memory(aios, execution, logged, "outcome_not_prepared")


class CountingEmbedder:
    """Vectors of four dimensions; the texts it was asked to embed, in order."""

    model = "counting-4"

    def __init__(self) -> None:
        self.embedded: list[str] = []

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.embedded.extend(texts)
        return [[0.5, 0.5, 0.5, 0.5] for _ in texts]


# Memories refused until an action is executed: the write in the booking's transaction fails, one after it does not.
REFUSE_MEMORIES_BEFORE_THE_BOOKING = {
    "sqlite": [
        "CREATE TRIGGER refuse_memory BEFORE INSERT ON memory "
        "WHEN NOT EXISTS (SELECT 1 FROM proposed_action WHERE status = 'executed') "
        "BEGIN SELECT RAISE(ABORT, 'memory refused'); END"
    ],
    "postgresql": [
        "CREATE FUNCTION refuse_memory() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
        "IF NOT EXISTS (SELECT 1 FROM proposed_action WHERE status = 'executed') THEN "
        "RAISE EXCEPTION 'memory refused'; END IF; RETURN NEW; END $$",
        "CREATE TRIGGER refuse_memory BEFORE INSERT ON memory FOR EACH ROW EXECUTE FUNCTION refuse_memory()",
    ],
}


async def test_an_outcome_memory_not_written_with_its_booking_is_written_after_it_without_embedding_again(
    database_url: str,
    slack_api: FakeSlackApi,
    clock: Clock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    embedder = CountingEmbedder()
    monkeypatch.setattr(memory_setup, "embedder_for", lambda _settings: embedder)
    aios = await start_aios(database_url, slack_api, clock, tmp_path)
    try:
        async with aios.engine.begin() as connection:
            for statement in REFUSE_MEMORIES_BEFORE_THE_BOOKING[aios.engine.dialect.name]:
                await connection.exec_driver_sql(statement)
        with structlog.testing.capture_logs() as logged:
            await approved_refund(aios)
        async with aios.units.read() as uow:
            memory = (await uow.session.exec(select(Memory))).one()
    finally:
        await aios.close()
    assert [e["event"] for e in logged].count("outcome_not_remembered_with_its_booking") == 1
    assert memory.key == "order:1001" and memory.vector_model == embedder.model
    assert [text for text in embedder.embedded if "refunded $" in text] == [memory.text]


async def test_an_action_whose_stored_parameters_no_longer_validate_is_still_told_done(
    aios: Aios, slack_api: FakeSlackApi, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The manager's Approve click (signed, through the web app) runs the refund, and then the connector's schema
    changes: the Done reply is still posted in the thread, from the stored name and parameters, without an Undo
    (no valid inverse can be made from them)."""
    registry, execute = aios.registry, aios.registry.execute

    def changed_schema(name: str, _params: object) -> Action:
        raise InvalidActionError(f"{name}: reason: field required")

    async def execute_then_upgrade(action: Action, key: str) -> dict[str, object]:
        result = await execute(action, key)
        monkeypatch.setattr(registry, "validate", changed_schema)
        return result

    await ask(aios, "refund order 1001, $250, arrived broken")
    async with aios.units() as uow:
        approval = (await uow.session.exec(select(Approval))).one()
    assert approval.message_ts is not None
    monkeypatch.setattr(registry, "execute", execute_then_upgrade)
    client = AsyncWebClient(token=TOKEN, base_url=slack_api.url)
    app = build_web_app(aios, build_slack_app(aios, client, SIGNING_SECRET), SIGNING_SECRET)
    body, content_type = block_action(
        "aios_approve", f"AP-{approval.id}", user=MANAGER, message_ts=approval.message_ts
    )
    with structlog.testing.capture_logs() as logged:
        async with TestClient(TestServer(app)) as web:
            response = await web.post(
                "/slack/events", data=body, headers={"Content-Type": content_type, **sign(body)}
            )
            assert response.status == 200
            await aios.background.drain()

    [done] = [c.params for c in slack_api.calls_to("chat.postMessage") if "Done" in c.params["text"]]
    assert done["text"].startswith(":white_check_mark: Done: shop.refund (amount: 250")
    assert "order_id: 1001" in done["text"]
    assert "aios_undo" not in str(done["blocks"])
    assert "event_handler_failed" not in [e["event"] for e in logged]
    [unavailable] = [e for e in logged if e["event"] == "done_summary_unavailable"]
    assert unavailable["name"] == "shop.refund" and unavailable["exc_info"] is True
