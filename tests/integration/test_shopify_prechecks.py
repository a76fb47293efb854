"""Shopify is asked before anyone is asked to approve: what it is certain to refuse (no such order, line, SKU or
location; more units than are left; an item refund whose amount is not Shopify's total) is never put on an
approval card, the thread says why, and Claude is told Shopify's own total so its next proposal is right. The
model is shown each order's lines with what is left to refund."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import respx
from sqlmodel import select

from bot.bootstrap import Aios
from connectors.actions import (
    Action,
    ShopifyAdjustInventory,
    ShopifyNote,
    ShopifyRefund,
    ShopifyRefundLine,
    ShopifyTagOrder,
)
from connectors.errors import TransientConnectorError
from connectors.registry import ConnectorRegistry
from connectors.sandbox_shop import OrderLine
from connectors.shopify_shop import ShopifyShop
from storage.records import ProposedAction
from tests.conftest import Clock
from tests.fakes.anthropic_api import API_KEY, FakeAnthropicApi, Reply, ToolUse
from tests.fakes.shopify_api import SHOP, TOKEN, FakeShopify, throttled
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import ask, start_aios
from tests.integration.test_shopify import PACKAGED_POLICY, SHOPIFY

MUTATIONS = ("RefundCreate", "TagsAdd", "OrderUpdate", "InventoryAdjust")


@pytest.fixture
def fake() -> FakeShopify:
    return FakeShopify()


@pytest.fixture
async def shop(fake: FakeShopify) -> AsyncIterator[ShopifyShop]:
    connector = ShopifyShop(SHOP, TOKEN, transport=fake.transport)
    yield connector
    await connector.close()


def mutations(fake: FakeShopify) -> list[str]:
    return [r["query"] for r in fake.requests if any(m in r["query"] for m in MUTATIONS)]


def item_refund(
    *lines: ShopifyRefundLine, order_id: int = 1001, amount: float = 160.0, **more: Any
) -> ShopifyRefund:
    return ShopifyRefund(order_id=order_id, lines=lines, amount=amount, note="arrived broken", **more)


# Order 1001 ($320) is two units of SKU-1001 (line item 10011) at $160 each, no tax.
ONE_UNIT = ShopifyRefundLine(sku="SKU-1001", quantity=1)
REFUSED: list[tuple[Action, str]] = [
    (item_refund(ONE_UNIT, order_id=4242), "order 4242 does not exist in Shopify (no order named #4242)"),
    (item_refund(ShopifyRefundLine(sku="MUG-9", quantity=1)), "order 1001 has no SKU MUG-9 in Shopify"),
    (
        item_refund(ShopifyRefundLine(line_item_id=99, quantity=1)),
        "order 1001 has no line item 99 in Shopify",
    ),
    (
        item_refund(ShopifyRefundLine(line_item_id=10011, quantity=3), amount=480.0),
        "order 1001 has 2 of line item 10011 (Ceramic pour-over set) left to refund, not 3",
    ),
    (
        item_refund(ONE_UNIT, shipping=12.5),
        "Shopify computes $172.50 for these items and shipping on order 1001 (taxes and discounts included), "
        "not $160.00; propose the refund again with amount 172.50",
    ),
    (ShopifyTagOrder(order_id=4242, tags=("damaged",)), "order 4242 does not exist in Shopify"),
    (ShopifyNote(order_id=4242, note="photos received"), "order 4242 does not exist in Shopify"),
    (
        ShopifyAdjustInventory(sku="SKU-100", delta=-1, reason="damaged"),
        "no inventory item in Shopify has the SKU 'SKU-100'",
    ),
    (
        ShopifyAdjustInventory(sku="SKU-1002", delta=-1, reason="damaged", location="Attic"),
        "Shopify has no location 'Attic'; its locations: Main warehouse, Retail store",
    ),
]
REFUSED_IDS = [
    "no-such-order",
    "sku-not-on-the-order",
    "line-item-not-on-the-order",
    "more-units-than-are-left",
    "amount-is-not-shopifys-total",
    "tag-no-such-order",
    "note-no-such-order",
    "unknown-sku",
    "unknown-location",
]


async def test_an_order_lists_its_lines_with_what_is_left_to_refund(
    fake: FakeShopify, shop: ShopifyShop
) -> None:
    order = await shop.get_order(1001)
    line = OrderLine(
        line_item_id=10011,
        sku="SKU-1001",
        title="Ceramic pour-over set",
        quantity=2,
        refundable_quantity=2,
        unit_price=160.0,
    )
    assert order is not None and order.lines == (line,)
    await shop.execute(item_refund(ONE_UNIT), "key-1")
    order = await shop.get_order(1001)
    assert order is not None and order.lines[0].refundable_quantity == 1
    assert order.describe_lines() == [
        "  line item 10011 (SKU SKU-1001): Ceramic pour-over set, $160.00 each before tax; 2 ordered, "
        "1 refundable"
    ]


@pytest.mark.parametrize(("action", "says"), REFUSED, ids=REFUSED_IDS)
async def test_what_shopify_would_refuse_is_said_before_approval_with_reads_only(
    fake: FakeShopify, shop: ShopifyShop, action: Action, says: str
) -> None:
    refused = await shop.refusal(action)
    assert refused is not None and refused.startswith(says)
    assert mutations(fake) == []


async def test_what_shopify_would_do_is_not_refused_and_stock_may_go_below_zero(
    fake: FakeShopify, shop: ShopifyShop
) -> None:
    possible: list[Action] = [
        item_refund(ONE_UNIT, shipping=12.5, amount=172.5, restock=True),
        item_refund(ShopifyRefundLine(line_item_id=10011, quantity=2), amount=320.0),
        ShopifyTagOrder(order_id=1001, tags=("damaged",)),
        ShopifyNote(order_id=1001, note="photos received"),
        # Shopify lets available stock go negative (selling on back order), so 10 − 50 is its call to make.
        ShopifyAdjustInventory(sku="SKU-1002", delta=-50, reason="shrinkage", location="2"),
    ]
    for action in possible:
        assert await shop.refusal(action) is None, action
    assert mutations(fake) == [] and fake.stock[("SKU-1002", "gid://shopify/Location/2")] == 10


async def test_a_check_shopify_throttles_refuses_for_now_and_says_so(
    fake: FakeShopify, shop: ShopifyShop
) -> None:
    fake.fail_next(throttled(requested=752, available=152, restore_rate=100.0))
    with pytest.raises(TransientConnectorError):
        await shop.refusal(ShopifyTagOrder(order_id=1001, tags=("damaged",)))
    fake.fail_next(throttled(requested=752, available=152, restore_rate=100.0))
    said = await ConnectorRegistry([shop]).refusal(ShopifyTagOrder(order_id=1001, tags=("damaged",)))
    assert said is not None and said.startswith(
        "shopify.tag_order could not be checked just now (Shopify is "
    )


# --- the whole bot, planned by Claude ----------------------------------------------------------------------


@pytest.fixture
def shopify_api(fake: FakeShopify) -> Iterator[FakeShopify]:
    with respx.mock(assert_all_called=False) as router:
        router.route(host=SHOP).mock(side_effect=fake.handle)
        router.route().pass_through()
        yield fake


@pytest.fixture
async def claude_on_shopify(
    shopify_api: FakeShopify,
    anthropic_api: FakeAnthropicApi,
    database_url: str,
    slack_api: FakeSlackApi,
    clock: Clock,
    tmp_path: Path,
) -> AsyncIterator[Aios]:
    aios = await start_aios(
        database_url,
        slack_api,
        clock,
        tmp_path,
        policy=PACKAGED_POLICY,
        ANTHROPIC_API_KEY=API_KEY,
        ANTHROPIC_BASE_URL=anthropic_api.url,
        **SHOPIFY,
    )
    yield aios
    await aios.close()


def tool_use(action: Action) -> ToolUse:
    return ToolUse(action.name.replace(".", "_"), action.model_dump(mode="json", exclude_defaults=True))


def said(slack_api: FakeSlackApi) -> str:
    return "\n".join(c.params["text"] for c in slack_api.calls_to("chat.postMessage"))


async def proposed(aios: Aios) -> list[ProposedAction]:
    async with aios.units() as uow:
        return list((await uow.session.exec(select(ProposedAction))).all())


@pytest.mark.parametrize(("action", "says"), REFUSED, ids=REFUSED_IDS)
async def test_claude_proposing_what_shopify_would_refuse_gets_no_card_and_the_thread_says_why(
    claude_on_shopify: Aios,
    shopify_api: FakeShopify,
    anthropic_api: FakeAnthropicApi,
    slack_api: FakeSlackApi,
    action: Action,
    says: str,
) -> None:
    anthropic_api.script(Reply("On it.", (tool_use(action),)), Reply("Shopify would refuse that."))
    # Every intent names something the dispatcher's words send to the returns agent ("damaged").
    await ask(claude_on_shopify, "order 1001 arrived damaged, please sort it out")

    [result] = anthropic_api.requests[1]["messages"][-1]["content"]
    assert result["is_error"] is True and says in result["content"]
    assert slack_api.approval_requests() == [] and await proposed(claude_on_shopify) == []
    assert says in said(slack_api)
    assert mutations(shopify_api) == []


async def test_a_wrong_amount_is_fixed_on_claudes_second_turn_and_one_card_carries_shopifys_total(
    claude_on_shopify: Aios,
    shopify_api: FakeShopify,
    anthropic_api: FakeAnthropicApi,
    slack_api: FakeSlackApi,
) -> None:
    # The model prices one set at its unit price and forgets the shipping it also refunds.
    first = item_refund(ONE_UNIT, shipping=12.5, amount=160.0)
    anthropic_api.script(
        Reply("Refunding one set and its shipping.", (tool_use(first),)),
        Reply("Shopify's total is $172.50.", (tool_use(first.model_copy(update={"amount": 172.5})),)),
    )
    await ask(
        claude_on_shopify, "one of the two sets on order 1001 arrived broken; refund it and the shipping"
    )

    system = json.dumps(anthropic_api.requests[0]["system"])
    assert "line item 10011 (SKU SKU-1001): Ceramic pour-over set, $160.00 each before tax" in system
    assert len(anthropic_api.requests) == 2
    [result] = anthropic_api.requests[1]["messages"][-1]["content"]
    assert result["is_error"] is True and "propose the refund again with amount 172.50" in result["content"]
    [action] = await proposed(claude_on_shopify)
    assert (action.name, action.params["amount"]) == ("shopify.refund", 172.5)
    [card] = slack_api.approval_requests()  # over $100: the packaged policy asks a manager
    assert "$172.50" in json.dumps(card.params) and "$160.00" not in json.dumps(card.params)
    assert mutations(shopify_api) == []
