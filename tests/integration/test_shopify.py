"""The Shopify shop: its settings and precedence, how it reads Shopify's answers (userErrors, THROTTLED with the
cost extension, 429, 401), tags and notes, refunds of line items, inventory adjustments, its health check, and
the whole bot refunding through the fake Admin GraphQL API, planned offline and by Claude (the contract every
shop keeps is in test_contract_shop.py)."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import respx
from sqlmodel import select

from bot.bootstrap import Aios
from bot.queries import why
from connectors.actions import (
    ShopifyAdjustInventory,
    ShopifyNote,
    ShopifyRefund,
    ShopifyRefundLine,
    ShopifyTagOrder,
    ShopRefund,
)
from connectors.base import ConnectorContext
from connectors.errors import ConnectorSettingError, PermanentConnectorError, TransientConnectorError
from connectors.http_shop import HttpShop
from connectors.sandbox_shop import SandboxShop
from connectors.shopify_shop import API_VERSION, ShopifyShop
from connectors.stripe_shop import StripeShop
from policies.engine import Policy
from runtime.messages import DecideApproval, Recover
from storage.engine import create_engine
from storage.records import ActionStatus, Execution
from storage.unit_of_work import UnitOfWorkFactory
from tests.conftest import Clock
from tests.fakes.aios_process import AIOS, aios_env
from tests.fakes.anthropic_api import API_KEY, FakeAnthropicApi, Reply, ToolUse
from tests.fakes.shopify_api import SHOP, TOKEN, FakeShopify, throttled
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import (
    CHANNEL,
    MANAGER,
    OTHER_MANAGER,
    REQUESTER,
    action_records,
    ask,
    start_aios,
)
from tests.integration.test_gated_refund import only_approval

SHOPIFY = {"SHOPIFY_SHOP": SHOP, "SHOPIFY_ACCESS_TOKEN": TOKEN}
PACKAGED_POLICY = (Path(__file__).parents[2] / "policies" / "default_policy.yaml").read_text()


def context(**settings: str) -> ConnectorContext:
    # Building a connector touches no store; the context only has to be a real one.
    units = UnitOfWorkFactory.for_engine(create_engine("sqlite+aiosqlite:///:memory:"))
    return ConnectorContext(
        units_of_work=units, shop_api_url=settings.pop("shop_api_url", None), settings=settings
    )


@pytest.fixture
def fake() -> FakeShopify:
    return FakeShopify()


@pytest.fixture
async def shop(fake: FakeShopify) -> AsyncIterator[ShopifyShop]:
    connector = ShopifyShop(SHOP, TOKEN, transport=fake.transport)
    yield connector
    await connector.close()


def test_shopify_is_the_shop_of_record_even_when_stripe_or_a_shop_api_is_set() -> None:
    both = context(shop_api_url="http://127.0.0.1:9/", STRIPE_API_KEY="sk_test_1", **SHOPIFY)
    assert isinstance(ShopifyShop.configured(both), ShopifyShop)
    assert StripeShop.configured(both) is None
    assert HttpShop.configured(both) is None
    assert SandboxShop.configured(both) is None
    assert ShopifyShop.configured(context()) is None


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"SHOPIFY_SHOP": SHOP}, "set both SHOPIFY_SHOP and SHOPIFY_ACCESS_TOKEN"),
        ({"SHOPIFY_ACCESS_TOKEN": TOKEN}, "set both SHOPIFY_SHOP and SHOPIFY_ACCESS_TOKEN"),
        ({**SHOPIFY, "SHOPIFY_SHOP": "https://my-shop.com/admin"}, "my-shop.myshopify.com"),
    ],
    ids=["shop-only", "token-only", "not-a-myshopify-domain"],
)
def test_a_malformed_setting_is_named_without_the_token(settings: dict[str, str], says: str) -> None:
    with pytest.raises(ConnectorSettingError, match=says) as raised:
        ShopifyShop.configured(context(**settings))
    assert TOKEN not in str(raised.value)


async def test_a_refund_goes_to_the_pinned_version_with_the_key_in_the_directive_and_the_note(
    fake: FakeShopify, shop: ShopifyShop
) -> None:
    seen: list[httpx.Request] = []

    def recording(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return fake.handle(request)

    connector = ShopifyShop(SHOP, TOKEN, transport=httpx.MockTransport(recording))
    try:
        await connector.execute(ShopRefund(order_id=1001, amount=19.99, reason="strap tore"), "key-1")
    finally:
        await connector.close()
    create = json.loads(seen[-1].content)
    assert str(seen[-1].url) == f"https://{SHOP}/admin/api/{API_VERSION}/graphql.json"
    assert create["variables"]["key"] == "key-1"
    refund_input = create["variables"]["input"]
    assert refund_input["note"] == "strap tore [aios:key-1]"
    assert refund_input["transactions"][0]["amount"] == "19.99"


async def test_user_errors_are_permanent_with_shopifys_message(fake: FakeShopify, shop: ShopifyShop) -> None:
    # Another app refunded most of the order after we read it: Shopify itself refuses.
    order = await shop.get_order(1002)
    assert order is not None and order.refundable == 48.0
    fake.fail_next(httpx.Response(200, json={"data": {"orders": {"nodes": [fake.orders[1002].node()]}}}))
    fake.orders[1002].refunds.append(
        {
            "id": "gid://shopify/Refund/1",
            "note": "by hand",
            "totalRefundedSet": {"shopMoney": {"amount": "40.00", "currencyCode": "USD"}},
        }
    )
    with pytest.raises(PermanentConnectorError, match="Refund amount exceeds refundable amount"):
        await shop.execute(ShopRefund(order_id=1002, amount=20.0, reason="late"), "key-1")
    assert fake.refund_creates == 0


async def test_throttled_is_transient_and_waits_for_the_bucket_to_refill(
    fake: FakeShopify, shop: ShopifyShop
) -> None:
    fake.fail_next(throttled(requested=752, available=152, restore_rate=100.0))
    with pytest.raises(TransientConnectorError) as raised:
        await shop.get_order(1001)
    assert raised.value.retry_after == 6.0  # (752 − 152) / 100 points a second


async def test_a_429_is_transient_with_retry_after_and_a_5xx_or_a_timeout_transient(
    fake: FakeShopify, shop: ShopifyShop
) -> None:
    fake.fail_next(httpx.Response(429, headers={"Retry-After": "2.0"}, json={"errors": "Exceeded"}))
    with pytest.raises(TransientConnectorError) as raised:
        await shop.get_order(1001)
    assert raised.value.retry_after == 2.0
    fake.fail_next(httpx.Response(502, text="Bad gateway"))
    with pytest.raises(TransientConnectorError, match="502"):
        await shop.get_order(1001)

    def timing_out(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out", request=request)

    slow = ShopifyShop(SHOP, TOKEN, transport=httpx.MockTransport(timing_out))
    try:
        with pytest.raises(TransientConnectorError, match="in time"):
            await slow.get_order(1001)
    finally:
        await slow.close()


async def test_a_refused_token_names_the_setting_and_never_the_token(fake: FakeShopify) -> None:
    wrong = "shpat_wrong0000AiosSecret"
    connector = ShopifyShop(SHOP, wrong, transport=fake.transport)
    try:
        with pytest.raises(PermanentConnectorError, match="SHOPIFY_ACCESS_TOKEN") as raised:
            await connector.health()
    finally:
        await connector.close()
    assert wrong not in str(raised.value)


async def test_health_says_which_shop_the_token_opens(shop: ShopifyShop) -> None:
    assert await shop.health() == f"authenticated to AIOS Test Shop ({SHOP})"


async def test_tags_and_notes_are_set_once_and_found_by_lookup(fake: FakeShopify, shop: ShopifyShop) -> None:
    tag = ShopifyTagOrder(order_id=1003, tags=("damaged-in-transit", "vip"))
    note = ShopifyNote(order_id=1003, note="Customer sent photos of the cracked jar.")
    assert await shop.lookup(tag, "k1") is None and await shop.lookup(note, "k2") is None
    for _ in range(2):
        assert (await shop.execute(tag, "k1"))["tags"] == ["damaged-in-transit", "vip"]
        await shop.execute(note, "k2")
    assert fake.orders[1003].tags == ["damaged-in-transit", "vip"]
    assert fake.orders[1003].note == note.note
    assert await shop.lookup(tag, "k1") == {"order_id": 1003, "tags": ["damaged-in-transit", "vip"]}
    assert await shop.lookup(note, "k2") is not None
    with pytest.raises(PermanentConnectorError, match="4242"):
        await shop.execute(ShopifyTagOrder(order_id=4242, tags=("x",)), "k3")


def test_the_packaged_policy_lets_tags_and_notes_through() -> None:
    policy = Policy.from_file()
    assert policy.evaluate("shopify.tag_order", {"order_id": 1, "tags": ["a"]}, "U1").verdict == "allow"
    assert policy.evaluate("shopify.note", {"order_id": 1, "note": "n"}, "U1").verdict == "allow"


# --- refunds of line items ----------------------------------------------------------------------------------

# Order 1001 ($320) is two units of SKU-1001 at $160 each.
ONE_UNIT_AND_SHIPPING = ShopifyRefund(
    order_id=1001,
    lines=(ShopifyRefundLine(sku="SKU-1001", quantity=1),),
    shipping=12.5,
    restock=True,
    amount=172.5,
    note="one cup arrived chipped",
)


async def test_an_item_refund_is_computed_by_shopify_made_once_and_found_by_lookup(
    fake: FakeShopify, shop: ShopifyShop
) -> None:
    assert await shop.lookup(ONE_UNIT_AND_SHIPPING, "key-1") is None
    first = await shop.execute(ONE_UNIT_AND_SHIPPING, "key-1")
    again = await shop.execute(ONE_UNIT_AND_SHIPPING, "key-1")

    assert fake.refund_creates == 1 and fake.orders[1001].refunded_units == 1
    assert first["amount"] == 172.5 and not first["replayed"]
    assert again == {**first, "replayed": True}
    assert await shop.lookup(ONE_UNIT_AND_SHIPPING, "key-1") == again
    assert await shop.lookup(ONE_UNIT_AND_SHIPPING, "key-2") is None
    create = next(r for r in reversed(fake.requests) if "RefundCreate" in r["query"])
    refund_input = create["variables"]["input"]
    assert refund_input["note"] == "one cup arrived chipped [aios:key-1]"
    assert refund_input["shipping"] == {"amount": "12.50"}
    [line] = refund_input["refundLineItems"]
    assert line == {
        "lineItemId": fake.orders[1001].line_gid,
        "quantity": 1,
        "restockType": "RETURN",
        "locationId": fake.primary_location,
    }
    assert fake.stock[("SKU-1001", fake.primary_location)] == 11  # restocked at the primary location


async def test_an_item_refund_whose_amount_is_not_shopifys_total_refunds_nothing(
    fake: FakeShopify, shop: ShopifyShop
) -> None:
    wrong = ONE_UNIT_AND_SHIPPING.model_copy(update={"amount": 160.0})
    with pytest.raises(PermanentConnectorError, match=r"Shopify computes \$172.50 .* not \$160.00"):
        await shop.execute(wrong, "key-1")
    assert fake.refund_creates == 0


@pytest.mark.parametrize(
    ("line", "says"),
    [
        (ShopifyRefundLine(sku="SKU-1001", quantity=3), "has 2 of SKU SKU-1001 .* left to refund, not 3"),
        (ShopifyRefundLine(sku="NOPE", quantity=1), "order 1001 has no SKU NOPE"),
        (ShopifyRefundLine(line_item_id=99, quantity=1), "order 1001 has no line item 99"),
    ],
    ids=["too-many-units", "unknown-sku", "unknown-line-item"],
)
async def test_an_impossible_item_refund_is_permanent_and_says_why(
    fake: FakeShopify, shop: ShopifyShop, line: ShopifyRefundLine, says: str
) -> None:
    action = ShopifyRefund(order_id=1001, lines=(line,), amount=160.0, note="n")
    with pytest.raises(PermanentConnectorError, match=says):
        await shop.execute(action, "key-1")
    assert fake.refund_creates == 0


def test_a_refund_line_names_exactly_one_line_item() -> None:
    with pytest.raises(ValueError, match="exactly one of line_item_id or sku"):
        ShopifyRefundLine(quantity=1)
    with pytest.raises(ValueError, match="exactly one of line_item_id or sku"):
        ShopifyRefundLine(line_item_id=1, sku="A", quantity=1)


# --- inventory ----------------------------------------------------------------------------------------------


async def test_stock_is_adjusted_once_with_the_key_in_the_directive_and_the_reference(
    fake: FakeShopify, shop: ShopifyShop
) -> None:
    received = ShopifyAdjustInventory(sku="SKU-1002", delta=5, reason="received")
    first = await shop.execute(received, "key-1")
    again = await shop.execute(received, "key-1")  # a retry: Shopify answers with the first adjustment

    assert fake.adjustments == 1 and fake.stock[("SKU-1002", fake.primary_location)] == 15
    assert (
        first
        == again
        == {
            "adjustment_id": "gid://shopify/InventoryAdjustmentGroup/701",
            "sku": "SKU-1002",
            "location": "Main warehouse",
            "delta": 5,
            "available": 15,
        }
    )
    adjust = next(r for r in fake.requests if "InventoryAdjust" in r["query"])
    assert adjust["variables"]["key"] == "key-1"
    assert adjust["variables"]["input"]["referenceDocumentUri"] == "aios://idempotency/key-1"

    damaged = ShopifyAdjustInventory(sku="SKU-1002", delta=-2, reason="damaged", location="retail store")
    assert (await shop.execute(damaged, "key-2"))["available"] == 8
    by_id = ShopifyAdjustInventory(sku="SKU-1002", delta=-1, reason="correction", location="2")
    assert (await shop.execute(by_id, "key-3"))["location"] == "Retail store"


@pytest.mark.parametrize(
    ("action", "says"),
    [
        (ShopifyAdjustInventory(sku="SKU-9", delta=1, reason="received"), "no inventory item .* 'SKU-9'"),
        (
            ShopifyAdjustInventory(sku="SKU-1002", delta=1, reason="received", location="Attic"),
            "no location 'Attic'; its locations: Main warehouse, Retail store",
        ),
    ],
    ids=["unknown-sku", "unknown-location"],
)
async def test_an_impossible_adjustment_is_permanent_and_says_why(
    fake: FakeShopify, shop: ShopifyShop, action: ShopifyAdjustInventory, says: str
) -> None:
    with pytest.raises(PermanentConnectorError, match=says):
        await shop.execute(action, "key-1")
    assert fake.adjustments == 0


async def test_an_adjustment_shopify_refuses_or_throttles_is_classified(
    fake: FakeShopify, shop: ShopifyShop
) -> None:
    action = ShopifyAdjustInventory(sku="SKU-1002", delta=1, reason="received")
    refused = {
        "inventoryAdjustQuantities": {
            "inventoryAdjustmentGroup": None,
            "userErrors": [{"field": ["input", "changes"], "message": "The quantity couldn't be updated."}],
        }
    }

    # The item and location queries are answered by the fake; only the mutation gets the queued answer.
    fake.fail_next(httpx.Response(200, json={"data": refused}), operation="InventoryAdjust")
    with pytest.raises(PermanentConnectorError, match="The quantity couldn't be updated"):
        await shop.execute(action, "key-1")
    fake.fail_next(throttled(requested=250, available=50, restore_rate=100.0), operation="InventoryAdjust")
    with pytest.raises(TransientConnectorError) as raised:
        await shop.execute(action, "key-1")
    assert raised.value.retry_after == 2.0 and fake.adjustments == 0


def test_adjustments_name_a_reason_shopify_knows_and_change_something() -> None:
    with pytest.raises(ValueError, match="reason"):
        ShopifyAdjustInventory(sku="A", delta=1, reason="lost-in-the-van")
    with pytest.raises(ValueError, match="must not be 0"):
        ShopifyAdjustInventory(sku="A", delta=0, reason="correction")


def test_the_packaged_policy_treats_item_refunds_like_refunds_and_stock_changes_need_a_manager() -> None:
    policy = Policy.from_file()
    params = {"order_id": 1, "lines": [{"sku": "A", "quantity": 1}], "note": "n"}
    big = policy.evaluate("shopify.refund", {**params, "amount": 150.0}, "U1")
    assert (big.verdict, big.rule_id) == ("require_approval", "shopify-item-refunds-over-100-need-a-manager")
    assert policy.evaluate("shopify.refund", {**params, "amount": 40.0}, "U1").verdict == "allow"
    stock = policy.evaluate("shopify.adjust_inventory", {"sku": "A", "delta": 1, "reason": "received"}, "U1")
    assert (stock.verdict, stock.approver_roles) == ("require_approval", ("manager",))


# --- the whole bot ------------------------------------------------------------------------------------------


@pytest.fixture
def shopify_api(fake: FakeShopify) -> Iterator[FakeShopify]:
    """Every call to the shop's myshopify.com host reaches the fake; everything else goes where it was going."""
    with respx.mock(assert_all_called=False) as router:
        router.route(host=SHOP).mock(side_effect=fake.handle)
        router.route().pass_through()
        yield fake


@pytest.fixture
async def shopify_aios(
    shopify_api: FakeShopify, database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> AsyncIterator[Aios]:
    instance = await start_aios(database_url, slack_api, clock, tmp_path, **SHOPIFY)
    yield instance
    await instance.close()


async def test_an_approved_refund_is_made_once_in_shopify_and_explained(
    shopify_aios: Aios, shopify_api: FakeShopify, slack_api: FakeSlackApi
) -> None:
    aios = shopify_aios
    assert isinstance(aios.registry.connector_for("shop.refund"), ShopifyShop)
    await ask(aios, "refund order 1001 $250 arrived broken")
    approval = await only_approval(aios)
    assert approval.id is not None and shopify_api.refund_creates == 0

    clicks = [
        DecideApproval(approval.id, m, approve=True, channel=CHANNEL) for m in [MANAGER, OTHER_MANAGER] * 3
    ]
    await asyncio.gather(*(aios.process(click) for click in clicks))

    [made] = shopify_api.orders[1001].refunds
    assert shopify_api.refund_creates == 1 and made["totalRefundedSet"]["shopMoney"]["amount"] == "250.00"
    async with aios.units() as uow:
        execution = (await uow.session.exec(select(Execution))).one()
    assert execution.status == "succeeded" and execution.result["refund_id"] == made["id"]
    assert made["note"] == f"arrived broken [aios:{execution.idempotency_key}]"
    explanation = await why(aios.units, f"AP-{approval.id}")
    assert MANAGER in explanation and "refunds-over-100-need-a-manager" in explanation

    # A process that died after Shopify refunded and before recording it: recovery asks Shopify, refunds nothing.
    async with aios.units() as uow:
        execution.status, execution.owner = "started", None
        uow.session.add(execution)
        await uow.runs.set_action_status(execution.action_id, ActionStatus.APPROVED)
        await uow.commit()
    await aios.process(Recover(grace_seconds=0))
    await aios.background.drain()

    assert shopify_api.refund_creates == 1 and len(shopify_api.orders[1001].refunds) == 1
    async with aios.units() as uow:
        settled = (await uow.session.exec(select(Execution))).one()
    assert settled.status == "succeeded" and settled.result["refund_id"] == made["id"]


async def test_a_refund_shopify_refuses_fails_once_and_no_record_or_message_holds_the_token(
    fake: FakeShopify, database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    creates: list[httpx.Request] = []

    def revoked_for_refunds(request: httpx.Request) -> httpx.Response:
        # The token reads orders but has lost write_orders; a proxy in front of Shopify echoes it back.
        if b"RefundCreate" not in request.content:
            return fake.handle(request)
        creates.append(request)
        return httpx.Response(403, json={"errors": f"Access denied for token {TOKEN}"})

    with respx.mock(assert_all_called=False) as router:
        router.route(host=SHOP).mock(side_effect=revoked_for_refunds)
        router.route().pass_through()
        aios = await start_aios(database_url, slack_api, clock, tmp_path, **SHOPIFY)
        try:
            await ask(aios, "refund $40 on order 1001, strap tore")  # small: the policy lets it through
            records = await action_records(aios)
        finally:
            await aios.close()

    assert len(creates) == 1 and fake.refund_creates == 0
    [execution] = [r for r in records if isinstance(r, Execution)]
    assert execution.status == "failed" and "SHOPIFY_ACCESS_TOKEN" in (execution.error or "")
    stored = json.dumps([r.model_dump(mode="json") for r in records])
    said = json.dumps([call.params for call in slack_api.calls])
    assert TOKEN not in stored and TOKEN not in said
    assert "SHOPIFY_ACCESS_TOKEN" in said


def test_a_malformed_shop_stops_the_bot_with_one_line_that_does_not_repeat_the_token(tmp_path: Path) -> None:
    env = {
        **aios_env(f"sqlite+aiosqlite:///{tmp_path}/c.db", "http://127.0.0.1:9/api/"),
        "SHOPIFY_SHOP": "https://my-shop.example.com",
        "SHOPIFY_ACCESS_TOKEN": TOKEN,
    }
    result = subprocess.run(
        [AIOS, "chat"], env=env, input="quit\n", capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert (
        line.startswith("error: SHOPIFY_SHOP must be the shop's myshopify.com domain") and TOKEN not in line
    )


async def test_claude_is_offered_shopifys_actions_and_an_item_refund_over_100_waits_for_a_manager(
    shopify_api: FakeShopify,
    anthropic_api: FakeAnthropicApi,
    database_url: str,
    slack_api: FakeSlackApi,
    clock: Clock,
    tmp_path: Path,
) -> None:
    # Order 1001 ($320) is two units of SKU-1001 at $160.
    refund = ToolUse(
        "shopify_refund",
        {
            "order_id": 1001,
            "lines": [{"sku": "SKU-1001", "quantity": 1}],
            "amount": 160.0,
            "note": "one of the two sets arrived broken",
        },
    )
    anthropic_api.script(Reply("Refunding the broken set.", (refund,)))
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
    try:
        await ask(aios, "refund one set on order 1001, it arrived broken")
        [request] = anthropic_api.requests
        assert [t["name"] for t in request["tools"]] == [
            "shop_refund",
            "email_send",
            "shopify_refund",
            "shopify_tag_order",
            "shopify_note",
            "shopify_adjust_inventory",
            "escalate_to_human",
        ]
        approval = await only_approval(aios)
        assert approval.id is not None and shopify_api.refund_creates == 0
        await aios.process(DecideApproval(approval.id, REQUESTER, approve=True, channel=CHANNEL))
        assert shopify_api.refund_creates == 0  # the requester is not a manager
        for _ in range(2):
            await aios.process(DecideApproval(approval.id, MANAGER, approve=True, channel=CHANNEL))
        explanation = await why(aios.units, f"AP-{approval.id}")
    finally:
        await aios.close()

    [made] = shopify_api.orders[1001].refunds
    assert shopify_api.refund_creates == 1 and made["totalRefundedSet"]["shopMoney"]["amount"] == "160.00"
    assert shopify_api.orders[1001].refunded_units == 1
    assert "shopify-item-refunds-over-100-need-a-manager" in explanation and MANAGER in explanation
