"""What the returns agent tells its planner about an order, when the shop's record is thin; and the order as its
context read it is what a refund of the same plan is checked against; what is remembered of the order and its
customer, read at once."""

from __future__ import annotations

from typing import Any

from sqlalchemy import event

from agents.base import PlanRequest
from agents.llm import CallContext
from agents.returns import ReturnsAgent
from bot.bootstrap import Aios
from connectors.actions import EmailSend, ShopRefund
from connectors.sandbox_shop import OrderInfo
from tests.integration.conftest import CHANNEL, REQUESTER

CALL = CallContext(intent_id=1, agent="returns", requester=REQUESTER, channel=CHANNEL, team_id="T0FAKE")


class NamelessOrders:
    """A shop whose order 1001 has a blank customer name, as a guest checkout can leave it."""

    async def get_order(self, order_id: int) -> OrderInfo | None:
        return OrderInfo(1001, "   ", "guest@example.com", "Mug", 40.0, 0.0) if order_id == 1001 else None


async def test_a_customer_without_a_name_is_described_and_greeted_all_the_same(aios: Aios) -> None:
    agent = ReturnsAgent(aios.llm, aios.registry, aios.memory, NamelessOrders())
    text = "refund order 1001 $5, chipped, and tell the customer"
    context = await agent.context(PlanRequest(text, REQUESTER, CALL))
    [line] = context.lines
    assert line.startswith(
        "order 1001: total $40.00, refundable $40.00, customer (unnamed) <guest@example.com>"
    )

    plan = await agent.plan(PlanRequest(text, REQUESTER, CALL))  # the offline planner: no model is set
    [refund, email] = plan.actions
    assert isinstance(refund, ShopRefund) and refund.order_id == 1001
    assert isinstance(email, EmailSend) and email.to == "guest@example.com"
    assert email.body.startswith("Hi there,")


class CountedOrders:
    """A shop whose order 1002 has $48.00 left to refund and 1003 $10.00, that counts the orders asked for."""

    def __init__(self) -> None:
        self.asked: list[int] = []

    async def get_order(self, order_id: int) -> OrderInfo | None:
        self.asked.append(order_id)
        refunded = {1002: 12.0, 1003: 50.0}.get(order_id)
        return OrderInfo(order_id, "Sam", "sam@example.com", "Lamp", 60.0, refunded) if refunded else None


async def test_a_refund_is_checked_against_the_order_as_the_plans_context_read_it(aios: Aios) -> None:
    orders = CountedOrders()
    agent = ReturnsAgent(aios.llm, aios.registry, aios.memory, orders)
    request = PlanRequest("refund order 1002 $50 never arrived", REQUESTER, CALL)

    plan = await agent.plan(request)  # the offline planner: no model is set
    assert plan.actions == [] and plan.problems == [
        "order 1002 has $48.00 left to refund, so $50.00 is more than can be refunded"
    ]
    assert orders.asked == [1002]  # read for the context, not again for the check

    # An order the context did not read is looked up for the check.
    context = await agent.context(request)
    other = ShopRefund(order_id=1003, amount=20.0, reason="broken")
    assert await agent.refusal(other, (), context) == (
        "order 1003 has $10.00 left to refund, so $20.00 is more than can be refunded"
    )
    assert orders.asked == [1002, 1002, 1003]


async def test_what_is_remembered_of_an_order_and_its_customer_is_read_in_one_statement(aios: Aios) -> None:
    order, _ = await aios.memory.remember(CALL.team_id, "order 1002 came late once before", key="order:1002")
    customer, _ = await aios.memory.remember(
        CALL.team_id, "Sam prefers store credit", key="customer:sam@example.com"
    )
    agent = ReturnsAgent(aios.llm, aios.registry, aios.memory, CountedOrders())
    sent: list[str] = []

    def sending(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not statement.startswith(("BEGIN", "COMMIT")):
            sent.append(statement.split()[0])

    event.listen(aios.engine.sync_engine, "before_cursor_execute", sending)
    try:
        context = await agent.context(PlanRequest("refund order 1002 $5 late", REQUESTER, CALL))
    finally:
        event.remove(aios.engine.sync_engine, "before_cursor_execute", sending)

    assert context.memory_ids == [order, customer]
    assert sent == ["SELECT", "UPDATE"]  # the memories read, then marked used
