"""Approval as a single-use capability: bound to the exact parameters, spent once, and not forever."""

from __future__ import annotations

from sqlmodel import col, select

from bot.bootstrap import Aios
from connectors.sandbox_state import sandbox_state
from runtime.messages import DecideApproval, ExecuteAction, PauseAgent, ResumeAgent
from storage.records import Approval, Capability, ProposedAction
from tests.conftest import Clock
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import CHANNEL, MANAGER, ask


async def refunds(aios: Aios) -> list[tuple[int, float]]:
    return [(r["order_id"], r["amount"]) for r in (await sandbox_state(aios.units))["refunds"]]


async def test_an_approval_is_a_capability_bound_to_the_exact_action(aios: Aios) -> None:
    await ask(aios, "refund order 1001, $250, broken")
    async with aios.units() as uow:
        approval = (await uow.session.exec(select(Approval))).one()
    assert approval.id is not None
    await aios.process(DecideApproval(approval.id, MANAGER, True, CHANNEL))
    async with aios.units() as uow:
        capability = (await uow.session.exec(select(Capability))).one()
    assert (capability.action_name, capability.granted_by) == ("shop.refund", MANAGER)
    assert capability.policy_hash == aios.policy.hash and capability.spent_at is not None
    assert len(capability.params_hash) == 64


async def test_changed_parameters_need_a_new_approval(aios: Aios, slack_api: FakeSlackApi) -> None:
    await ask(aios, "refund order 1001, $250, broken")
    await aios.process(PauseAgent("returns", MANAGER, CHANNEL))  # so the approved action waits
    async with aios.units() as uow:
        approval = (await uow.session.exec(select(Approval))).one()
    assert approval.id is not None
    await aios.process(DecideApproval(approval.id, MANAGER, True, CHANNEL))
    async with aios.units() as uow:  # someone edits the stored action after it was approved
        action = await uow.get(ProposedAction, approval.action_id)
        assert action is not None
        action.params = {**action.params, "amount": 320.0}
        uow.session.add(action)
        await uow.commit()

    await aios.process(ResumeAgent("returns", MANAGER, CHANNEL))

    assert await refunds(aios) == []
    assert any(
        "no longer matches the action" in c.params["text"] for c in slack_api.calls_to("chat.postMessage")
    )
    async with aios.units() as uow:
        action = await uow.get(ProposedAction, approval.action_id)
    assert action is not None and action.status == "failed"


async def test_a_stale_approval_does_not_run(aios: Aios, clock: Clock) -> None:
    await ask(aios, "refund order 1001, $250, broken")
    await aios.process(PauseAgent("returns", MANAGER, CHANNEL))
    async with aios.units() as uow:
        approval = (await uow.session.exec(select(Approval))).one()
    assert approval.id is not None
    await aios.process(DecideApproval(approval.id, MANAGER, True, CHANNEL))  # approved, held by the pause
    clock.advance(days=2)
    await aios.process(ResumeAgent("returns", MANAGER, CHANNEL))
    assert await refunds(aios) == []


async def test_a_capability_is_spent_once(aios: Aios) -> None:
    await ask(aios, "refund $20 on order 1002, late")
    async with aios.units() as uow:
        action = (await uow.session.exec(select(ProposedAction).order_by(col(ProposedAction.id)))).one()
        action.status = "approved"  # as if something tried to run it again
        uow.session.add(action)
        await uow.commit()
    assert action.id is not None
    await aios.process(ExecuteAction(action.id))
    assert await refunds(aios) == [(1002, 20.0)]
