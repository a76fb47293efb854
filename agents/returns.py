"""The returns agent: refunds and customer messages, with the orders mentioned looked up first."""

from __future__ import annotations

import re
from typing import Protocol, runtime_checkable

from agents.amounts import SHOP_CURRENCY
from agents.base import Agent, Context, PlanRequest
from agents.llm import LLM
from connectors.actions import Action, ShopRefund
from connectors.errors import ConnectorError
from connectors.registry import ConnectorRegistry
from connectors.sandbox_shop import OrderInfo
from storage.memory import MemoryStore


@runtime_checkable
class OrderLookup(Protocol):
    async def get_order(self, order_id: int) -> OrderInfo | None: ...


class ReturnsAgent(Agent):
    name = "returns"
    action_names = ("shop.refund", "email.send")
    optional_action_names = (
        "shopify.refund",
        "shopify.tag_order",
        "shopify.note",
        "shopify.adjust_inventory",
    )

    def __init__(
        self, llm: LLM, registry: ConnectorRegistry, memory: MemoryStore, orders: OrderLookup
    ) -> None:
        super().__init__(llm, registry, memory)
        self._orders = orders

    async def context(self, request: PlanRequest) -> Context:
        """The orders mentioned, and what is remembered about each order and its customer (exact keys)."""
        texts = [request.text, *(m.text for m in request.history)]
        order_ids = sorted({int(n) for t in texts for n in re.findall(r"\b(\d{3,7})\b", t)})
        context = Context()
        lines = context.lines
        for order_id in order_ids:
            try:
                order = await self._orders.get_order(order_id)
            except ConnectorError as exc:
                lines.append(f"order {order_id}: could not be looked up just now ({exc})")
                continue
            if order is not None:
                lines.append(
                    f"order {order.id}: total ${order.total:.2f}, refundable ${order.refundable:.2f}, "
                    f"customer {order.customer_name.split()[0]} <{order.customer_email}>, item {order.item}"
                )
                lines.extend(order.describe_lines())
            team = request.call.team_id
            context.add_memories(await self._memory.lookup(team, f"order:{order_id}"))
            if order is not None:
                context.add_memories(await self._memory.lookup(team, f"customer:{order.customer_email}"))
        return context

    async def refusal(self, action: Action) -> str | None:
        """A refund the shop is certain to refuse (no such order, another currency, more than is left)."""
        if not isinstance(action, ShopRefund):
            return await super().refusal(action)
        try:
            order = await self._orders.get_order(action.order_id)
        except ConnectorError as exc:
            return f"order {action.order_id} could not be looked up just now ({exc}); try again shortly"
        if order is None:
            return f"there is no order {action.order_id} in the shop"
        if order.currency != SHOP_CURRENCY:
            return (
                f"order {order.id} was paid in {order.currency}, and refunds are made in {SHOP_CURRENCY} only"
            )
        if order.refundable <= 0:
            return f"order {order.id} has nothing left to refund"
        if action.amount > order.refundable + 1e-9:
            return (
                f"order {order.id} has ${order.refundable:,.2f} left to refund, so ${action.amount:,.2f} is "
                "more than can be refunded"
            )
        return None
