"""The sandbox shop's refund: the order debited by one conditional UPDATE (the key unused, enough left), then the
refund written; a key used before answers with its refund whatever has happened to the order since, and more than
is left, or an order that does not exist, is refused without a write."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import event
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlmodel import col, select

from connectors.actions import ShopRefund
from connectors.base import ConnectorContext
from connectors.errors import PermanentConnectorError
from connectors.sandbox_shop import SandboxShop
from storage.records import SandboxOrder
from storage.unit_of_work import UnitOfWorkFactory
from tests.integration.conftest import until_waiting_for_locks


class Sent(list[str]):
    """The first word of every statement sent, BEGIN left out, while listening."""

    def on_statement(self, _conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if not statement.startswith("BEGIN"):
            self.append(statement.split()[0])


def sent_statements(engine: AsyncEngine) -> Sent:
    sent = Sent()
    event.listen(engine.sync_engine, "before_cursor_execute", sent.on_statement)
    return sent


async def order_row(units: UnitOfWorkFactory, order_id: int) -> SandboxOrder:
    async with units.read() as uow:
        order = await uow.get(SandboxOrder, order_id)
    assert isinstance(order, SandboxOrder)
    return order


@pytest.fixture
async def shop(units: UnitOfWorkFactory) -> SandboxShop:
    made = SandboxShop(ConnectorContext(units_of_work=units))
    await made.seed()
    return made


def refund(order_id: int, amount: float) -> ShopRefund:
    return ShopRefund(order_id=order_id, amount=amount, reason="arrived broken")


async def test_a_refund_debits_the_order_then_writes_the_refund(
    engine: AsyncEngine, shop: SandboxShop
) -> None:
    sent = sent_statements(engine)
    result = await shop.execute(refund(1003, 40.0), "key-1")
    event.remove(engine.sync_engine, "before_cursor_execute", sent.on_statement)

    assert result["replayed"] is False
    assert sent == ["UPDATE", "INSERT"]
    order = await shop.get_order(1003)
    assert order is not None and order.refunded == 40.0


async def test_a_refund_may_take_what_is_left_to_the_cent_and_no_more(
    engine: AsyncEngine, shop: SandboxShop, units: UnitOfWorkFactory
) -> None:
    await shop.execute(refund(1004, 25.49), "key-1")  # $75.50: $50.01 left
    sent = sent_statements(engine)
    with pytest.raises(
        PermanentConnectorError, match=r"order 1004 has \$50.01 left to refund; \$50.02 is too much"
    ):
        await shop.execute(refund(1004, 50.02), "key-2")
    event.remove(engine.sync_engine, "before_cursor_execute", sent.on_statement)
    assert sent == ["UPDATE", "SELECT"]  # nothing written

    partly = await order_row(units, 1004)
    assert (partly.refunded, partly.status) == (25.49, "partially_refunded")
    await shop.execute(refund(1004, 50.01), "key-3")
    refunded = await order_row(units, 1004)
    assert (refunded.refunded, refunded.status) == (75.5, "refunded")
    assert await shop.lookup(refund(1004, 50.02), "key-2") is None


async def test_an_order_that_does_not_exist_is_refused(shop: SandboxShop) -> None:
    with pytest.raises(PermanentConnectorError, match="order 4242 does not exist"):
        await shop.execute(refund(4242, 40.0), "key-1")
    assert await shop.lookup(refund(4242, 40.0), "key-1") is None


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


async def twice_after_waiting_for_the_order(
    engine: AsyncEngine, shop: SandboxShop, action: Any
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Two calls of ``action`` under one key, both made to wait for order 1002's lock, then let go."""
    async with engine.connect() as holder:
        await holder.execute(select(SandboxOrder.id).where(col(SandboxOrder.id) == 1002).with_for_update())
        calls = asyncio.gather(shop.execute(action, "key-1"), shop.execute(action, "key-1"))
        await until_waiting_for_locks(engine, 2)
        await holder.rollback()
    first, second = await calls
    return first, second


async def test_calls_with_one_key_that_waited_for_the_order_answer_with_the_one_refund(
    engine: AsyncEngine, shop: SandboxShop
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite's writers take turns from BEGIN to COMMIT: a call never waits inside a statement")
    order = await shop.get_order(1002)
    assert order is not None
    everything = refund(1002, order.refundable)
    first, second = await twice_after_waiting_for_the_order(engine, shop, everything)

    # The call that got the lock second finds the refund the first made under the key: it answers with it,
    # rather than finding nothing left to refund.
    assert first["refund_id"] == second["refund_id"]
    assert sorted([first["replayed"], second["replayed"]]) == [False, True]
    after = await shop.get_order(1002)
    assert after is not None and after.refundable == 0.0


async def test_calls_with_one_key_that_waited_for_the_order_make_one_refund_when_enough_is_left_for_two(
    engine: AsyncEngine, shop: SandboxShop
) -> None:
    if engine.dialect.name != "postgresql":
        pytest.skip("SQLite's writers take turns from BEGIN to COMMIT: a call never waits inside a statement")
    part = refund(1002, 10.0)  # $48 left: the call that waited finds enough for itself too
    first, second = await twice_after_waiting_for_the_order(engine, shop, part)

    # Its debit of the order goes with its refund, which the key refuses: it answers with the first's.
    assert first["refund_id"] == second["refund_id"]
    assert sorted([first["replayed"], second["replayed"]]) == [False, True]
    after = await shop.get_order(1002)
    assert after is not None and after.refunded == 10.0
