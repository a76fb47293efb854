"""The returns agent: refunds and customer messages, with the orders and Stripe payments mentioned looked up
first."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from agents.amounts import SHOP_CURRENCY
from agents.base import Agent, Context, PlanRequest
from agents.llm import LLM
from agents.patterns import MAILTO, UNNAMED
from connectors.actions import Action, ShopRefund, StripeRefund
from connectors.errors import ConnectorError
from connectors.redaction import scrubbing
from connectors.registry import ConnectorRegistry
from connectors.sandbox_shop import OrderInfo
from connectors.stripe_payments import EMAIL, PAYMENT_ID, PaymentInfo
from storage.memory import MemoryStore
from storage.memory.entities import named_keys

# Payments and emails looked up per request, at most: each one costs Stripe calls before anything is planned.
MAX_LOOKUPS = 5


@dataclass(frozen=True)
class OrdersContext(Context):
    """The returns agent's context, with the orders it read by id (None: the shop has no such order)."""

    orders: dict[int, OrderInfo | None] = field(default_factory=dict)


@runtime_checkable
class OrderLookup(Protocol):
    async def get_order(self, order_id: int) -> OrderInfo | None: ...


@runtime_checkable
class PaymentLookup(Protocol):
    async def find_payments(self, query: str) -> list[PaymentInfo]: ...


class ReturnsAgent(Agent):
    name = "returns"
    action_names = ("shop.refund", "email.send")
    optional_action_names = (
        "shopify.refund",
        "shopify.tag_order",
        "shopify.note",
        "shopify.adjust_inventory",
        "stripe.refund",
    )

    def __init__(
        self, llm: LLM, registry: ConnectorRegistry, memory: MemoryStore, orders: OrderLookup
    ) -> None:
        super().__init__(llm, registry, memory)
        self._orders = orders
        payments = registry.connector_for("stripe.refund") if "stripe.refund" in self.action_names else None
        self._payments = payments if isinstance(payments, PaymentLookup) else None

    async def context(self, request: PlanRequest) -> OrdersContext:
        """The orders and Stripe payments mentioned, and what is remembered about each order and customer (exact
        keys)."""
        texts = [request.text, *(m.text for m in request.history)]
        order_ids = sorted({int(n) for t in texts for n in _ORDER_NUMBER.findall(t)})
        # What is remembered is given about what this request is about: the orders, customers and payments it
        # names, or, when it names none ("and another $10"), the thread's. An earlier request in the thread about
        # another order is still context, but its memories would be taken for this one's ("memories used").
        about = [request.text] if _names_something(request.text) else texts
        remembered = {int(n) for t in about for n in _ORDER_NUMBER.findall(t)}
        context = OrdersContext()
        lines = context.lines
        keys: dict[str, None] = {}  # of what is remembered, in the order it is given
        for order_id in order_ids:
            try:
                order = context.orders[order_id] = await self._orders.get_order(order_id)
            except ConnectorError as exc:
                lines.append(f"order {order_id}: could not be looked up just now ({exc})")
                continue
            if order is not None:
                lines.append(
                    f"order {order.id}: total ${order.total:.2f}, refundable ${order.refundable:.2f}, "
                    f"customer {_first_name(order.customer_name)} <{order.customer_email}>, item {order.item}"
                )
                lines.extend(order.describe_lines())
            if order_id not in remembered:
                continue
            keys[f"order:{order_id}"] = None
            if order is not None:
                # The customer's memories may be about their other orders: a customer's history is context
                # for a refund, and `/aios why` shows each memory's key, so it reads as about the customer.
                keys[f"customer:{order.customer_email.lower()}"] = None
        if self._payments is not None:
            keys |= await self._add_payments(self._payments, texts, about, context)
        if keys:
            context.add_memories(await self._memory.lookup(request.call.team_id, *keys))
        return context

    async def _add_payments(
        self, payments: PaymentLookup, texts: list[str], about: list[str], context: Context
    ) -> dict[str, None]:
        """A line for each payment named by id, and for each email address its payments (ids first), e.g.
        ``payment pi_3Q… (charge ch_3Q…): paid 120.00 USD on 2026-11-20, refunded 20.00, left 100.00, status succeeded,
        customer ana@example.com, description Blue kettle``. Returns the keys of what is remembered about the
        payments and customers named in ``about`` (the request, or the thread when the request names none)."""
        plain = [MAILTO.sub(r"\1", text) for text in texts]
        ids = list(dict.fromkeys(m.group() for t in plain for m in PAYMENT_ID.finditer(t)))[:MAX_LOOKUPS]
        emails = list(dict.fromkeys(m.group().lower() for t in plain for m in EMAIL.finditer(t)))[
            :MAX_LOOKUPS
        ]
        named = [MAILTO.sub(r"\1", text) for text in about]
        asked = {m.group() for t in named for m in PAYMENT_ID.finditer(t)}
        asked |= {m.group().lower() for t in named for m in EMAIL.finditer(t)}
        lines = context.lines
        described: set[str] = set()
        keys: dict[str, None] = {}
        customers = dict.fromkeys(e for e in emails if e in asked)
        for query, label in [*((i, f"payment {i}") for i in ids), *((e, f"payments of {e}") for e in emails)]:
            try:
                with scrubbing(self._registry.redactor):
                    found = await payments.find_payments(query)
            except ConnectorError as exc:
                lines.append(f"{label}: could not be looked up just now ({exc})")
                continue
            if not found:
                lines.append(
                    f"{label}: none in Stripe" if query in emails else f"{label}: not found in Stripe"
                )
                continue
            if query in emails:
                lines.append(f"{label}: {', '.join(p.id for p in found)} (newest first)")
            for payment in found:
                if payment.id not in described:
                    described.add(payment.id)
                    lines.append(_describe(payment))
                if query not in asked:
                    continue
                keys[f"payment:{payment.id}"] = None
                if payment.customer_email:
                    customers[payment.customer_email.lower()] = None
        return keys | {f"customer:{email}": None for email in customers}

    async def refusal(
        self, action: Action, planned: Sequence[Action] = (), context: Context | None = None
    ) -> str | None:
        """A refund the shop is certain to refuse (no such order, another currency, more than is left); a
        Stripe refund naming a charge of a PaymentIntent, which is to be named by the PaymentIntent.

        An order the plan's context read is not looked up again: read moments before, for the same plan. This
        check spares approvers a refund bound to fail; what stops a refund of more than is left is the shop,
        when it refunds (after the approval, however long that takes)."""
        if isinstance(action, StripeRefund):
            return await self._other_payment_id(action) or await super().refusal(action, planned, context)
        if not isinstance(action, ShopRefund):
            return await super().refusal(action, planned, context)
        try:
            order = await self._order(action.order_id, context)
        except ConnectorError as exc:
            return f"order {action.order_id} could not be looked up just now ({exc}); try again shortly"
        if order is None:
            return f"there is no order {action.order_id} in the shop"
        if order.currency != SHOP_CURRENCY:
            return (
                f"order {order.id} was paid in {order.currency}, and refunds are made in {SHOP_CURRENCY} only"
            )
        # Refunds proposed earlier in this plan take their share of what is left, as they will run first.
        planned_here = sum(a.amount for a in planned if isinstance(a, ShopRefund) and a.order_id == order.id)
        left = round(order.refundable - planned_here, 2)
        already = f" after the ${planned_here:,.2f} already proposed" if planned_here else ""
        if left <= 0:
            return f"order {order.id} has nothing left to refund{already}"
        if action.amount > left + 1e-9:
            return (
                f"order {order.id} has ${left:,.2f} left to refund{already}, so ${action.amount:,.2f} is "
                "more than can be refunded"
            )
        return None

    async def _order(self, order_id: int, context: Context | None) -> OrderInfo | None:
        """The order as the plan's context read it, else as the shop has it now."""
        if isinstance(context, OrdersContext) and order_id in context.orders:
            return context.orders[order_id]
        return await self._orders.get_order(order_id)

    async def _other_payment_id(self, action: StripeRefund) -> str | None:
        """The policy's per-payment limit adds up refunds by the id they name: a charge of a PaymentIntent is
        refunded under the PaymentIntent's id, so that refunds asked for by either id are counted together."""
        if self._payments is None or action.payment.startswith("pi_"):
            return None
        try:
            with scrubbing(self._registry.redactor):
                found = await self._payments.find_payments(action.payment)
        except ConnectorError:
            return None  # the registry's own check asks Stripe again, and says why it cannot
        if found and found[0].id != action.payment:
            return (
                f"charge {action.payment} belongs to PaymentIntent {found[0].id}; propose the refund of "
                f"payment {found[0].id} instead, so that every refund of this payment is counted together"
            )
        return None


# An order number as a request writes it ("order 1001", "#1001", "refund 1001 …"): 3 to 7 digits that are not part
# of an amount ("$1002", "1002.50"), a date, a time or an id (R-1002).
_ORDER_NUMBER = re.compile(r"(?<![$€£\w.,/:-])(\d{3,7})\b(?![.,/:-]\d)")


def _names_something(text: str) -> bool:
    """Whether a request names an order, a payment, a customer or a post of its own."""
    return bool(_ORDER_NUMBER.search(text) or named_keys(text))


def _first_name(name: str) -> str:
    """How the customer is greeted; a shop may hold a blank name (one word either way: grammars read it)."""
    words = name.split()
    return words[0] if words else UNNAMED


def _describe(payment: PaymentInfo) -> str:
    return (
        f"payment {payment.id}{f' (charge {payment.charge})' if payment.charge else ''}: "
        f"paid {payment.amount:.2f} {payment.currency} on {payment.created:%Y-%m-%d}, "
        f"refunded {payment.refunded:.2f}, left {payment.left:.2f}, status {payment.status}, "
        f"customer {payment.customer_email or 'unknown'}, description {payment.description or '(none)'}"
    )
