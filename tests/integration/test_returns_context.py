"""What the returns agent tells its planner about an order, when the shop's record is thin."""

from __future__ import annotations

from agents.base import PlanRequest
from agents.llm import CallContext
from agents.returns import ReturnsAgent
from bot.bootstrap import Aios
from connectors.actions import EmailSend, ShopRefund
from connectors.sandbox_shop import OrderInfo
from tests.integration.conftest import CHANNEL, REQUESTER

CALL = CallContext(intent_id=1, agent="returns", requester=REQUESTER, channel=CHANNEL)


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
