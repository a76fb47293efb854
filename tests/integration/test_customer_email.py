"""A customer email goes through the real sandbox outbox: gated by a manager, sent exactly once."""

from __future__ import annotations

from sqlmodel import col, select

from bot.bootstrap import Aios
from connectors.registry import idempotency_key
from connectors.sandbox_state import sandbox_state
from runtime.messages import DecideApproval, ExecuteAction, ReconcileExecution
from storage.records import Approval, Execution, ProposedAction
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import CHANNEL, MANAGER, ask


async def actions(aios: Aios) -> list[ProposedAction]:
    async with aios.units() as uow:
        query = select(ProposedAction).order_by(col(ProposedAction.id))
        return list((await uow.session.exec(query)).all())


async def test_a_refund_with_a_customer_email_sends_one_email_after_a_manager_approves(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    await ask(aios, "refund order 1003 $40 and tell the customer")

    state = await sandbox_state(aios.units)
    assert [(r["order_id"], r["amount"]) for r in state["refunds"]] == [(1003, 40.0)]
    assert state["emails"] == []
    assert [(a.name, a.status) for a in await actions(aios)] == [
        ("shop.refund", "executed"),
        ("email.send", "awaiting_approval"),
    ]
    async with aios.units() as uow:
        approval = (await uow.session.exec(select(Approval))).one()
    assert approval.id is not None and approval.approver_roles == ["manager"]

    await aios.process(DecideApproval(approval.id, MANAGER, approve=True, channel=CHANNEL))

    [email] = (await sandbox_state(aios.units))["emails"]
    assert email["to"] == "ana@example.com" and email["created_at"]
    assert [(a.name, a.status) for a in await actions(aios)] == [
        ("shop.refund", "executed"),
        ("email.send", "executed"),
    ]
    assert any(
        "Done: Email ana@example.com" in c.params["text"] for c in slack_api.calls_to("chat.postMessage")
    )

    # Executing again — a second click's command, a recovery pass, the connector called with the same key —
    # sends nothing more.
    sent = (await actions(aios))[1]
    assert sent.id is not None
    async with aios.units() as uow:
        execution = (await uow.session.exec(select(Execution).where(Execution.action_id == sent.id))).one()
    assert execution.id is not None
    await aios.process(ExecuteAction(sent.id))
    await aios.process(ReconcileExecution(execution.id))
    action = aios.registry.validate(sent.name, sent.params)
    key = idempotency_key(sent.id, action)
    assert key == execution.idempotency_key
    replay = await aios.registry.execute(action, key)
    assert replay == {"email_id": email["id"], "to": "ana@example.com", "replayed": True}
    assert await aios.registry.lookup(action, key) == replay
    assert len((await sandbox_state(aios.units))["emails"]) == 1
