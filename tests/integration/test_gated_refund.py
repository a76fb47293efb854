"""The loop on a real database: intent → proposal → policy → approval → exactly one execution."""

from __future__ import annotations

import asyncio
from pathlib import Path

from sqlmodel import select

from bot.bootstrap import Aios
from bot.queries import why
from connectors.actions import ShopRefund
from connectors.sandbox_state import sandbox_state
from runtime.messages import DecideApproval, ExecuteAction
from storage.records import Approval, Decision, Execution, Intent, ProposedAction, Run
from tests.conftest import Clock
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import CHANNEL, MANAGER, OTHER_MANAGER, REQUESTER, ask, start_aios


async def only_approval(aios: Aios) -> Approval:
    async with aios.units() as uow:
        approvals = (await uow.session.exec(select(Approval))).all()
    assert len(approvals) == 1
    return approvals[0]


async def refunds_for(aios: Aios, order_id: int) -> list[dict[str, object]]:
    return [r for r in (await sandbox_state(aios.units))["refunds"] if r["order_id"] == order_id]


async def test_large_refund_is_recorded_and_waits_for_a_manager(aios: Aios, slack_api: FakeSlackApi) -> None:
    intent_id = await ask(aios, "refund order 1001, $250, arrived broken")

    async with aios.units() as uow:
        session = uow.session
        intent = await uow.get(Intent, intent_id)
        run = (await session.exec(select(Run))).one()
        action = (await session.exec(select(ProposedAction))).one()
        decision = (await session.exec(select(Decision))).one()
    assert intent is not None and intent.status == "dispatched"
    assert (run.agent, run.status) == ("returns", "awaiting_approval")
    assert (action.name, action.params) == (
        "shop.refund",
        {"order_id": 1001, "amount": 250.0, "reason": "arrived broken"},
    )
    assert (decision.verdict, decision.rule_id) == ("require_approval", "refunds-over-100-need-a-manager")
    assert decision.policy_hash == aios.policy.hash
    approval = await only_approval(aios)
    assert approval.status == "pending" and approval.message_ts is not None
    [request] = slack_api.approval_requests()
    assert request.params["thread_ts"] == "1700000000.000100"
    assert await refunds_for(aios, 1001) == []


async def test_many_concurrent_clicks_execute_once(aios: Aios, slack_api: FakeSlackApi) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken")
    approval = await only_approval(aios)
    assert approval.id is not None
    clicks = [
        DecideApproval(approval.id, manager, approve=True, channel=CHANNEL)
        for manager in [MANAGER, OTHER_MANAGER] * 10
    ]
    await asyncio.gather(*(aios.process(click) for click in clicks))

    assert len(await refunds_for(aios, 1001)) == 1
    async with aios.units() as uow:
        executions = (await uow.session.exec(select(Execution))).all()
        decisions = (await uow.session.exec(select(Decision).where(Decision.kind == "human"))).all()
        refused = (await uow.session.exec(select(Decision).where(Decision.kind == "refusal"))).all()
    assert len(executions) == 1 and executions[0].status == "succeeded"
    assert len(decisions) == 1
    assert len(refused) == 19 and {d.verdict for d in refused} == {"refused:already_decided"}
    assert len(slack_api.calls_to("chat.update")) == 1


async def test_executing_an_approved_action_again_changes_nothing(aios: Aios) -> None:
    await ask(aios, "refund $40 on order 1002, strap tore")
    async with aios.units() as uow:
        action = (await uow.session.exec(select(ProposedAction))).one()
    assert action.id is not None and action.status == "executed"

    await asyncio.gather(*(aios.process(ExecuteAction(action.id)) for _ in range(10)))

    assert len(await refunds_for(aios, 1002)) == 1


async def test_the_connector_itself_honours_the_idempotency_key(aios: Aios) -> None:
    refund = ShopRefund(order_id=1003, amount=10.0, reason="scuffed box")
    results = await asyncio.gather(*(aios.registry.execute(refund, "key-1") for _ in range(5)))
    assert len({r["refund_id"] for r in results}) == 1
    assert sorted(r["replayed"] for r in results) == [False, True, True, True, True]
    assert len(await refunds_for(aios, 1003)) == 1


async def test_refusals_are_recorded_and_only_the_clicker_hears_them(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken", user=MANAGER)
    approval = await only_approval(aios)
    assert approval.id is not None
    await aios.process(DecideApproval(approval.id, "U0RANDOM", approve=True, channel=CHANNEL))
    await aios.process(DecideApproval(approval.id, MANAGER, approve=True, channel=CHANNEL))

    ephemerals = slack_api.calls_to("chat.postEphemeral")
    assert [c.params["user"] for c in ephemerals] == ["U0RANDOM", MANAGER]
    assert "manager" in ephemerals[0].params["text"] and "requester" in ephemerals[1].params["text"]
    assert await refunds_for(aios, 1001) == []
    assert (await only_approval(aios)).status == "pending"
    explanation = await why(aios.units, f"AP-{approval.id}")
    assert explanation.count("refused") == 2


async def test_an_expired_request_cannot_be_approved(
    aios: Aios, clock: Clock, slack_api: FakeSlackApi
) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken")
    approval = await only_approval(aios)
    assert approval.id is not None
    clock.advance(hours=4, seconds=1)

    await aios.process(DecideApproval(approval.id, MANAGER, approve=True, channel=CHANNEL))

    assert (await only_approval(aios)).status == "expired"
    assert await refunds_for(aios, 1001) == []
    assert "expired" in slack_api.calls_to("chat.postEphemeral")[-1].params["text"]
    assert "expired" in slack_api.calls_to("chat.update")[-1].params["text"]


async def test_a_rejection_executes_nothing_and_says_so(aios: Aios, slack_api: FakeSlackApi) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken")
    approval = await only_approval(aios)
    assert approval.id is not None
    await aios.process(DecideApproval(approval.id, MANAGER, approve=False, channel=CHANNEL))
    await aios.process(DecideApproval(approval.id, OTHER_MANAGER, approve=True, channel=CHANNEL))

    assert (await only_approval(aios)).status == "rejected"
    assert await refunds_for(aios, 1001) == []
    assert any("rejected" in c.params["text"] for c in slack_api.calls_to("chat.postMessage"))
    async with aios.units() as uow:
        run = (await uow.session.exec(select(Run))).one()
    assert run.status == "rejected"


async def test_a_denied_action_is_never_executed(aios: Aios) -> None:
    await ask(aios, "refund $20 on order 1004 and tell the customer")
    state = await sandbox_state(aios.units)
    assert len([r for r in state["refunds"] if r["order_id"] == 1004]) == 1
    assert state["emails"] == []
    async with aios.units() as uow:
        email = (
            await uow.session.exec(select(ProposedAction).where(ProposedAction.name == "email.send"))
        ).one()
    assert email.status == "denied"


async def test_a_connector_refusal_is_reported_and_changes_nothing(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    # The shop refunds part of order 1001 elsewhere while the $250 waits for a manager: the approved refund
    # is then more than is left, and the shop refuses it.
    await ask(aios, "refund order 1001, $250, arrived broken")
    await aios.registry.execute(ShopRefund(order_id=1001, amount=100.0, reason="elsewhere"), "elsewhere")
    approval = await only_approval(aios)
    assert approval.id is not None
    await aios.process(DecideApproval(approval.id, MANAGER, approve=True, channel=CHANNEL))

    assert [r["amount"] for r in await refunds_for(aios, 1001)] == [100.0]
    async with aios.units() as uow:
        execution = (await uow.session.exec(select(Execution))).one()
    assert execution.status == "failed" and "too much" in (execution.error or "")
    assert any(
        "failed" in c.params["text"] and "Nothing was changed." in c.params["text"]
        for c in slack_api.calls_to("chat.postMessage")
    )


async def test_a_duplicate_delivery_is_accepted_once(aios: Aios) -> None:
    from runtime.intake import IncomingIntent

    incoming = IncomingIntent(
        source="mention",
        team_id="T",
        channel=CHANNEL,
        thread_ts="1.1",
        user=REQUESTER,
        text="refund order 1001",
        delivery_key="Ev0DUPLICATE",
    )
    results = await asyncio.gather(*(aios.accept(incoming) for _ in range(5)))
    assert sum(r is not None for r in results) == 1


async def test_acked_but_unhandled_intents_are_handled_on_recovery(
    aios: Aios, database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    from runtime.intake import IncomingIntent

    stopped = await start_aios(database_url, slack_api, clock, tmp_path)  # acked it, then stopped
    await stopped.accept(
        IncomingIntent(
            source="mention",
            team_id="T",
            channel=CHANNEL,
            thread_ts="1.2",
            user=REQUESTER,
            text="refund $15 on order 1005, late",
        )
    )
    await stopped.close()
    await aios.recover()
    await aios.background.drain()
    assert len(await refunds_for(aios, 1005)) == 1
    await aios.recover()  # recovering again finds nothing to do
    await aios.background.drain()
    assert len(await refunds_for(aios, 1005)) == 1
