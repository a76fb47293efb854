"""A sandbox shop on the SQL store: orders and refunds, with idempotency keys like a real payments API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from connectors.actions import Action, ShopRefund
from connectors.base import ConnectorContext
from connectors.errors import PermanentConnectorError
from connectors.sandbox_orders import seed_orders
from storage.records import SandboxOrder, SandboxRefund
from storage.repositories.base import dialect_of

# An order's lines beyond these are left out of what the model is shown; their ids are still valid to refund.
MAX_DESCRIBED_LINES = 50


@dataclass(frozen=True)
class OrderLine:
    """One line item of an order, as a shop that refunds by item knows it."""

    line_item_id: int
    sku: str | None
    title: str
    quantity: int
    refundable_quantity: int
    unit_price: float  # after the line's discounts, before tax

    def describe(self) -> str:
        sku = f" (SKU {self.sku})" if self.sku else ""
        return (
            f"line item {self.line_item_id}{sku}: {self.title}, ${self.unit_price:,.2f} each before tax; "
            f"{self.quantity} ordered, {self.refundable_quantity} refundable"
        )


@dataclass(frozen=True)
class OrderInfo:
    id: int
    customer_name: str
    customer_email: str
    item: str
    total: float
    refunded: float
    currency: str = "USD"  # ISO 4217; the shop refunds in the order's own currency only
    lines: tuple[OrderLine, ...] = ()  # filled by shops that refund by item (Shopify); empty otherwise

    @property
    def refundable(self) -> float:
        return round(self.total - self.refunded, 2)

    def describe_lines(self) -> list[str]:
        """The order's lines for a prompt, one a line, at most MAX_DESCRIBED_LINES of them."""
        described = [f"  {line.describe()}" for line in self.lines[:MAX_DESCRIBED_LINES]]
        if len(self.lines) > MAX_DESCRIBED_LINES:
            described.append(f"  … and {len(self.lines) - MAX_DESCRIBED_LINES} more lines")
        return described


class SandboxShop:
    actions: ClassVar[tuple[type[Action], ...]] = (ShopRefund,)

    @classmethod
    def configured(cls, context: ConnectorContext) -> SandboxShop | None:
        """Used unless a real shop is configured (a shop API, Stripe, or Shopify)."""
        real = ("STRIPE_API_KEY", "SHOPIFY_SHOP", "SHOPIFY_ACCESS_TOKEN")
        return None if context.shop_api_url or any(context.settings.get(n) for n in real) else cls(context)

    def __init__(self, context: ConnectorContext) -> None:
        self._units = context.units_of_work

    async def seed(self) -> None:
        """Create orders 1001–1005 the first time; never touches them afterwards."""
        await seed_orders(self._units)

    async def get_order(self, order_id: int) -> OrderInfo | None:
        async with self._units.read() as uow:
            order = await uow.get(SandboxOrder, order_id)
            if order is None:
                return None
            return OrderInfo(
                order.id, order.customer_name, order.customer_email, order.item, order.total, order.refunded
            )

    async def execute(self, action: Action, idempotency_key: str) -> dict[str, Any]:
        assert isinstance(action, ShopRefund)
        try:
            return await self._refund(action, idempotency_key)
        except IntegrityError:
            # A concurrent call with the same key won the insert: answer with its refund.
            async with self._units() as uow:
                existing = await self._refund_by_key(uow.session, idempotency_key)
                assert existing is not None
                return _refund_result(existing, replayed=True)

    async def lookup(self, action: Action, idempotency_key: str) -> dict[str, Any] | None:
        async with self._units() as uow:
            refund = await self._refund_by_key(uow.session, idempotency_key)
        return _refund_result(refund, replayed=True) if refund is not None else None

    async def _refund(self, action: ShopRefund, key: str) -> dict[str, Any]:
        async with self._units() as uow:
            session = uow.session
            # The order, locked, and a refund made before under the same key (of whichever order), in one read on
            # SQLite, whose writers take turns. On PostgreSQL the lock comes first, alone: a statement that waits
            # for a row lock re-reads only the row it locks, so a refund the holder made under the key would stay
            # unseen, and its call be refused for want of anything left to refund.
            if dialect_of(session) == "postgresql":
                lock = (
                    select(SandboxOrder.id).where(col(SandboxOrder.id) == action.order_id).with_for_update()
                )
                await session.exec(lock)
            query = (
                select(SandboxOrder, SandboxRefund)
                .outerjoin(SandboxRefund, col(SandboxRefund.idempotency_key) == key)
                .where(SandboxOrder.id == action.order_id)
            )
            found = (await session.exec(query)).first()
            existing = found[1] if found is not None else await self._refund_by_key(session, key)
            if existing is not None:
                return _refund_result(existing, replayed=True)
            if found is None:
                raise PermanentConnectorError(f"order {action.order_id} does not exist")
            order = found[0]
            refundable = round(order.total - order.refunded, 2)
            if action.amount > refundable + 1e-9:
                raise PermanentConnectorError(
                    f"order {order.id} has ${refundable:,.2f} left to refund; ${action.amount:,.2f} is too much"
                )
            refund = await uow.add(
                SandboxRefund(
                    order_id=order.id, amount=action.amount, reason=action.reason, idempotency_key=key
                )
            )
            order.refunded = round(order.refunded + action.amount, 2)
            order.status = "refunded" if order.refunded >= order.total else "partially_refunded"
            session.add(order)
            await uow.commit()
            return _refund_result(refund, replayed=False)

    @staticmethod
    async def _refund_by_key(session: Any, key: str) -> SandboxRefund | None:
        query = select(SandboxRefund).where(col(SandboxRefund.idempotency_key) == key)
        result: SandboxRefund | None = (await session.exec(query)).first()
        return result


def _refund_result(refund: SandboxRefund, *, replayed: bool) -> dict[str, Any]:
    return {
        "refund_id": f"re_{refund.id}",
        "order_id": refund.order_id,
        "amount": refund.amount,
        "replayed": replayed,
    }
