"""The click that approves an action for good claims its execution in the click's own transaction (the capability
minted spent, the idempotency key claimed); whatever holds the action back leaves the claim to ExecuteAction. A
process stopped right after the click's commit leaves the claimed execution to be reconciled, once."""

from __future__ import annotations

from pathlib import Path

from sqlmodel import col, select

from bot.bootstrap import Aios
from connectors.sandbox_state import sandbox_state
from runtime.messages import DecideApproval, ExecuteAction, PauseAgent, Recover
from storage.records import Approval, Capability, Execution, ExecutionAttempt, ProposedAction
from tests.conftest import Clock
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import CHANNEL, MANAGER, ask, start_aios


async def the_approval(aios: Aios) -> Approval:
    async with aios.units() as uow:
        return (await uow.session.exec(select(Approval))).one()


async def refunds(aios: Aios) -> list[tuple[int, float]]:
    return [(r["order_id"], r["amount"]) for r in (await sandbox_state(aios.units))["refunds"]]


async def claimed(aios: Aios) -> tuple[list[Execution], list[Capability]]:
    async with aios.units() as uow:
        executions = list((await uow.session.exec(select(Execution))).all())
        capabilities = list((await uow.session.exec(select(Capability))).all())
    return executions, capabilities


async def test_a_click_stopped_after_its_commit_leaves_a_claim_that_recovery_reconciles_once(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    first = await start_aios(database_url, slack_api, clock, tmp_path)
    await ask(first, "refund order 1001, $250, broken")
    approval = await the_approval(first)
    assert approval.id is not None
    # The click decided, and nothing after its commit: the ActionApproved it hands on is never handled.
    await first.handlers.approvals.decide_approval(DecideApproval(approval.id, MANAGER, True, CHANNEL))
    [execution], [capability] = await claimed(first)
    assert (execution.action_id, execution.status) == (approval.action_id, "started")
    assert capability.spent_at is not None
    assert await refunds(first) == []
    await first.close()

    second = await start_aios(database_url, slack_api, clock, tmp_path)
    try:
        await second.process(Recover(grace_seconds=0))
        await second.process(Recover(grace_seconds=0))
        assert await refunds(second) == [(1001, 250.0)]
        [execution], _ = await claimed(second)
        assert execution.status == "succeeded"
        async with second.units() as uow:
            attempts = (
                await uow.session.exec(select(ExecutionAttempt).order_by(col(ExecutionAttempt.id)))
            ).all()
            action = await uow.get(ProposedAction, approval.action_id)
        # Looked up by its key first, then executed: the claim was the click's, not made again.
        assert [a.kind for a in attempts] == ["lookup", "execute"]
        assert action is not None and action.status == "executed"
    finally:
        await second.close()


async def test_a_click_for_a_paused_agent_leaves_the_claim_to_its_resumption(aios: Aios) -> None:
    await ask(aios, "refund order 1001, $250, broken")
    await aios.process(PauseAgent("returns", MANAGER, CHANNEL))
    approval = await the_approval(aios)
    assert approval.id is not None
    await aios.handlers.approvals.decide_approval(DecideApproval(approval.id, MANAGER, True, CHANNEL))
    executions, [capability] = await claimed(aios)
    assert executions == [] and capability.spent_at is None


async def test_a_recovered_click_leaves_the_claim_to_execute_action(aios: Aios) -> None:
    await ask(aios, "refund order 1001, $250, broken")
    approval = await the_approval(aios)
    assert approval.id is not None
    recovered = DecideApproval(approval.id, MANAGER, True, CHANNEL, recovered=True)
    await aios.handlers.approvals.decide_approval(recovered)
    executions, [capability] = await claimed(aios)
    assert executions == [] and capability.spent_at is None
    await aios.process(ExecuteAction(approval.action_id))  # as its ActionApproved sets off
    assert await refunds(aios) == [(1001, 250.0)]
