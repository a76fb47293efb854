"""A sandbox shop on the SQL store: orders and refunds, with idempotency keys like a real payments API."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from sqlalchemy import ColumnElement, Float, Numeric, Update, bindparam, case, cast, func, update
from sqlalchemy import select as sql_select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from connectors.actions import Action, ShopRefund
from connectors.base import ConnectorContext
from connectors.errors import PermanentConnectorError
from connectors.sandbox_orders import seed_orders
from storage.records import SandboxOrder, SandboxRefund
from storage.repositories.base import core_connection

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
            connection = await uow.session.connection()  # a plain row: nothing needs the order loaded
            row = (await connection.execute(_ORDER, {"order_id": order_id})).first()
        return None if row is None else OrderInfo(*row)

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
            # The order debited (and locked) by one UPDATE … RETURNING when the key is new and enough is left, then
            # the refund written. On PostgreSQL a twin call under the same key that waited for the lock does not see
            # the refund the holder made (a statement re-reads only the rows it locks): with enough left it debits
            # the order again, and the refund's INSERT, refused for its key, rolls that back (see execute); with too
            # little left, the read that says why, a statement of its own, finds the holder's refund.
            debit = {"order_id": action.order_id, "refund_amount": action.amount, "refund_key": key}
            connection = await core_connection(session)  # orders are no audited record
            debited = (await connection.execute(_DEBIT, debit)).first()
            if debited is None:
                return await self._replayed_or_refused(session, action, key)
            refund = await uow.add(
                SandboxRefund(
                    order_id=action.order_id, amount=action.amount, reason=action.reason, idempotency_key=key
                )
            )
            await uow.commit()
            return _refund_result(refund, replayed=False)

    async def _replayed_or_refused(self, session: Any, action: ShopRefund, key: str) -> dict[str, Any]:
        """The order was not debited: the refund made before under the key (of whichever order), else refused for
        want of the order or of enough left to refund; read in one statement (two when the key names no refund
        and the order does not exist)."""
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
        raise PermanentConnectorError(
            f"order {order.id} has ${refundable:,.2f} left to refund; ${action.amount:,.2f} is too much"
        )

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


def _cents(amount: ColumnElement[float]) -> ColumnElement[float]:
    """``amount`` rounded to whole cents by the database, as ``round(amount, 2)`` rounds a sum or a difference of
    amounts in whole cents in Python (PostgreSQL rounds only exact numbers to places, hence the cast)."""
    return func.round(cast(amount, Numeric), 2)


def _debit() -> Update:
    """Add the refund (``refund_amount``) to the order's (``order_id``) refunded total, returning its id, only when
    no refund was made under ``refund_key`` yet and the order has at least the amount left to refund (to the
    cent)."""
    amount = bindparam("refund_amount", type_=Float)
    refunded = _cents(col(SandboxOrder.refunded) + amount)
    key_used = (
        select(col(SandboxRefund.id))
        .where(col(SandboxRefund.idempotency_key) == bindparam("refund_key"))
        .exists()
    )
    return (
        update(SandboxOrder)
        .where(
            col(SandboxOrder.id) == bindparam("order_id"),
            ~key_used,
            _cents(col(SandboxOrder.total) - col(SandboxOrder.refunded)) + 1e-9 >= amount,
        )
        .values(
            refunded=refunded,
            status=case((refunded >= col(SandboxOrder.total), "refunded"), else_="partially_refunded"),
        )
        .returning(col(SandboxOrder.id))
    )


# Built once: a statement remembers its cache key, so each read skips building it and walking it for that key.
_ORDER = sql_select(
    col(SandboxOrder.id),
    col(SandboxOrder.customer_name),
    col(SandboxOrder.customer_email),
    col(SandboxOrder.item),
    col(SandboxOrder.total),
    col(SandboxOrder.refunded),
).where(col(SandboxOrder.id) == bindparam("order_id"))

# Built once: a statement remembers its cache key, so each refund skips building it and walking it for that key.
_DEBIT = _debit()
