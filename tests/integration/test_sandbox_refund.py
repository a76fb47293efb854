"""The sandbox shop's refund: the order locked and the idempotency key looked up in one read, then the refund and
the order written; a key used before answers with its refund whatever has happened to the order since."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine

from connectors.actions import ShopRefund
from connectors.base import ConnectorContext
from connectors.sandbox_shop import SandboxShop
from storage.unit_of_work import UnitOfWorkFactory


@pytest.fixture
async def shop(units: UnitOfWorkFactory) -> SandboxShop:
    made = SandboxShop(ConnectorContext(units_of_work=units))
    await made.seed()
    return made


def refund(order_id: int, amount: float) -> ShopRefund:
    return ShopRefund(order_id=order_id, amount=amount, reason="arrived broken")


async def test_a_refund_reads_once_then_writes_the_refund_and_the_order(
    engine: AsyncEngine, shop: SandboxShop
) -> None:
    sent: list[str] = []

    def sending(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not statement.startswith("BEGIN"):
            sent.append(statement.split()[0])

    event.listen(engine.sync_engine, "before_cursor_execute", sending)
    try:
        result = await shop.execute(refund(1003, 40.0), "key-1")
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", sending)

    assert result["replayed"] is False
    assert sent == ["SELECT", "INSERT", "UPDATE"]
    order = await shop.get_order(1003)
    assert order is not None and order.refunded == 40.0


async def test_a_key_used_before_answers_with_its_refund_when_nothing_is_left_to_refund(
    shop: SandboxShop,
) -> None:
    order = await shop.get_order(1002)
    assert order is not None
    first = await shop.execute(refund(1002, order.refundable), "key-1")

    again = await shop.execute(refund(1002, order.refundable), "key-1")

    assert (again["refund_id"], again["replayed"]) == (first["refund_id"], True)
    after = await shop.get_order(1002)
    assert after is not None and after.refundable == 0.0


async def test_a_key_used_before_answers_with_its_refund_even_naming_an_order_that_does_not_exist(
    shop: SandboxShop,
) -> None:
    first = await shop.execute(refund(1003, 40.0), "key-1")

    again = await shop.execute(refund(4242, 40.0), "key-1")

    assert (again["refund_id"], again["order_id"], again["replayed"]) == (first["refund_id"], 1003, True)
