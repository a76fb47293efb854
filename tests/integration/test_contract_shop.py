"""One contract for every shop connector: the sandbox must behave like Stripe (a real localstripe process) and
Shopify (a stateful fake of its Admin GraphQL API).

Orders 1001–1005 are in each shop: the sandbox seeds them, in Stripe they are payment intents tagged with
their order number, in Shopify they are the orders named #1001–#1005. A "crash between sent and recorded" is
a refund made by one connector instance and asked about by a fresh one, which knows nothing but what the shop
itself keeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any, Protocol

import pytest

from connectors.actions import Action, ShopRefund
from connectors.base import ConnectorContext
from connectors.errors import PermanentConnectorError
from connectors.sandbox_shop import OrderInfo, SandboxShop
from connectors.shopify_shop import ShopifyShop
from connectors.stripe_shop import StripeShop
from storage.engine import create_engine
from storage.migrate import upgrade_to_head
from storage.unit_of_work import UnitOfWorkFactory
from tests.fakes.localstripe_server import API_KEY, LocalStripe
from tests.fakes.shopify_api import SHOP, TOKEN, FakeShopify


class Shop(Protocol):
    async def get_order(self, order_id: int) -> OrderInfo | None: ...
    async def execute(self, action: Action, idempotency_key: str) -> dict[str, Any]: ...
    async def lookup(self, action: Action, idempotency_key: str) -> dict[str, Any] | None: ...


@pytest.fixture(scope="module")
def localstripe() -> Iterator[LocalStripe]:
    with LocalStripe() as server:
        yield server


@pytest.fixture(params=["sandbox", "stripe", "shopify"])
async def new_shop(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Callable[[], Shop]]:
    """Builds connector instances on one shop's data: each instance knows only what the shop keeps."""
    if request.param == "stripe":
        server: LocalStripe = request.getfixturevalue("localstripe")
        server.reset()
        await server.seed()
        built: list[StripeShop] = []

        def stripe_shop() -> Shop:
            built.append(StripeShop(API_KEY, server.url))
            return built[-1]

        yield stripe_shop
        for shop in built:
            await shop.close()
        return
    if request.param == "shopify":
        fake = FakeShopify()
        shops: list[ShopifyShop] = []

        def shopify_shop() -> Shop:
            shops.append(ShopifyShop(SHOP, TOKEN, transport=fake.transport))
            return shops[-1]

        yield shopify_shop
        for made in shops:
            await made.close()
        return
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path}/shop.db")
    await upgrade_to_head(engine)
    context = ConnectorContext(units_of_work=UnitOfWorkFactory.for_engine(engine))
    await SandboxShop(context).seed()
    yield lambda: SandboxShop(context)
    await engine.dispose()


@pytest.fixture
def shop(new_shop: Callable[[], Shop]) -> Shop:
    return new_shop()


def refund(order_id: int = 1003, amount: float = 40.0, reason: str = "arrived broken") -> ShopRefund:
    return ShopRefund(order_id=order_id, amount=amount, reason=reason)


async def test_an_order_is_found_with_its_customer_item_and_total(shop: Shop) -> None:
    order = await shop.get_order(1001)
    # Line items are known only to shops that refund by item; Shopify's are checked in test_shopify.py.
    assert order is not None and replace(order, lines=()) == OrderInfo(
        id=1001,
        customer_name="Maya Patel",
        customer_email="maya@example.com",
        item="Ceramic pour-over set",
        total=320.0,
        refunded=0.0,
        currency="USD",
    )
    assert await shop.get_order(4242) is None


async def test_a_refund_is_made_and_counted_against_the_order(shop: Shop) -> None:
    result = await shop.execute(refund(1004, 19.99), "key-1")
    assert (result["order_id"], result["amount"], result["replayed"]) == (1004, 19.99, False)
    assert result["refund_id"]
    await shop.execute(refund(1004, 0.29), "key-2")
    order = await shop.get_order(1004)
    assert order is not None and (order.refunded, order.refundable) == (20.28, 55.22)


async def test_the_same_key_makes_one_refund_and_returns_the_first(shop: Shop) -> None:
    first = await shop.execute(refund(), "key-1")
    again = await asyncio.gather(*(shop.execute(refund(), "key-1") for _ in range(3)))
    assert {r["refund_id"] for r in again} == {first["refund_id"]}
    assert all(r["replayed"] for r in again)
    order = await shop.get_order(1003)
    assert order is not None and order.refunded == 40.0


async def test_concurrent_first_calls_with_one_key_make_one_refund(shop: Shop) -> None:
    results = await asyncio.gather(*(shop.execute(refund(), "key-1") for _ in range(4)))
    assert len({r["refund_id"] for r in results}) == 1
    assert sorted(r["replayed"] for r in results) == [False, True, True, True]
    order = await shop.get_order(1003)
    assert order is not None and order.refunded == 40.0


async def test_lookup_finds_a_landed_key_and_nothing_for_an_unknown_one(shop: Shop) -> None:
    made = await shop.execute(refund(), "key-1")
    found = await shop.lookup(refund(), "key-1")
    assert found is not None and (found["refund_id"], found["amount"]) == (made["refund_id"], 40.0)
    assert await shop.lookup(refund(), "key-2") is None


@pytest.mark.parametrize(
    ("action", "says"),
    [
        (refund(1002, 48.01), "too much"),
        (refund(4242, 10.0), "4242"),
    ],
    ids=["more-than-is-left", "no-such-order"],
)
async def test_an_impossible_refund_is_refused_for_good_and_changes_nothing(
    shop: Shop, action: ShopRefund, says: str
) -> None:
    with pytest.raises(PermanentConnectorError, match=says):
        await shop.execute(action, "key-1")
    assert await shop.lookup(action, "key-1") is None
    order = await shop.get_order(1002)
    assert order is not None and order.refunded == 0.0


async def test_a_second_refund_past_what_is_left_is_refused(shop: Shop) -> None:
    await shop.execute(refund(1002, 40.0), "key-1")
    with pytest.raises(PermanentConnectorError, match="too much"):
        await shop.execute(refund(1002, 8.01), "key-2")
    await shop.execute(refund(1002, 8.0), "key-3")
    order = await shop.get_order(1002)
    assert order is not None and order.refundable == 0.0


async def test_after_a_crash_between_refunding_and_recording_a_fresh_instance_finds_the_refund(
    new_shop: Callable[[], Shop],
) -> None:
    made = await new_shop().execute(refund(), "key-1")  # landed; the process died before recording it

    restarted = new_shop()
    found = await restarted.lookup(refund(), "key-1")
    assert found is not None and found["refund_id"] == made["refund_id"]
    again = await restarted.execute(refund(), "key-1")
    assert again["refund_id"] == made["refund_id"] and again["replayed"]
    order = await restarted.get_order(1003)
    assert order is not None and order.refunded == 40.0
