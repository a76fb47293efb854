"""The sandbox shop's refund: the order locked and the idempotency key looked up in one read (on PostgreSQL the lock
first, alone), then the refund and the order written; a key used before answers with its refund whatever has
happened to the order since."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from connectors.actions import ShopRefund
from connectors.base import ConnectorContext
from connectors.sandbox_shop import SandboxShop
from storage.records import SandboxOrder
from storage.unit_of_work import UnitOfWorkFactory
from tests.integration.conftest import until_waiting_for_locks


@pytest.fixture
async def shop(units: UnitOfWorkFactory) -> SandboxShop:
    made = SandboxShop(ConnectorContext(units_of_work=units))
    await made.seed()
    return made


def refund(order_id: int, amount: float) -> ShopRefund:
    return ShopRefund(order_id=order_id, amount=amount, reason="arrived broken")


async def test_a_refund_locks_and_reads_then_writes_the_refund_and_the_order(
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
    locked_alone = ["SELECT"] if engine.dialect.name == "postgresql" else []
    assert sent == [*locked_alone, "SELECT", "INSERT", "UPDATE"]
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


async def test_calls_with_one_key_that_waited_for_the_order_answer_with_the_one_refund(
    engine: AsyncEngine, shop: SandboxShop
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite's writers take turns from BEGIN to COMMIT: a call never waits inside a statement")
    order = await shop.get_order(1002)
    assert order is not None
    everything = refund(1002, order.refundable)
    async with engine.connect() as holder:  # the order locked, so that both calls wait for it
        await holder.execute(select(SandboxOrder.id).where(col(SandboxOrder.id) == 1002).with_for_update())
        calls = asyncio.gather(shop.execute(everything, "key-1"), shop.execute(everything, "key-1"))
        await until_waiting_for_locks(engine, 2)
        await holder.rollback()
    first, second = await calls

    # The call that got the lock second finds the refund the first made under the key: it answers with it,
    # rather than finding nothing left to refund.
    assert first["refund_id"] == second["refund_id"]
    assert sorted([first["replayed"], second["replayed"]]) == [False, True]
    after = await shop.get_order(1002)
    assert after is not None and after.refundable == 0.0
