"""Shopify as the shop of record, through the Admin GraphQL API: orders, refunds (of an amount, or of specific
items), order tags and notes, and inventory adjustments.

An order is found by its number as shown to customers (``#1001`` is the order named "#1001"). Exactly once,
twice over: a refund carries our idempotency key in Shopify's ``@idempotent`` directive (Shopify answers a
retry with the first refund), and in the refund's note as ``[aios:<key>]``, where ``lookup`` finds it and where
``execute`` looks before it acts — so a retry after Shopify's idempotency window still refunds once. Tags and
notes are idempotent by nature (adding a tag twice, or setting the same note, changes nothing more).
A refund of items is computed by Shopify (``suggestedRefund``) and made only if that total is the amount the
policy judged. An inventory adjustment carries the key in the ``@idempotent`` directive (required from 2026-04)
and in its ``referenceDocumentUri``.
Before anyone is asked to approve, ``refusal`` says what Shopify is certain to refuse: no such order, line, SKU
or location, more units than are left, or an item refund whose amount is not Shopify's total (with that total,
so the model can propose it).
SHOPIFY_ACCESS_TOKEN never appears in a result or an error message.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any, ClassVar, Self

import httpx

from connectors.actions import (
    Action,
    ShopifyAdjustInventory,
    ShopifyNote,
    ShopifyRefund,
    ShopifyRefundLine,
    ShopifyTagOrder,
    ShopRefund,
)
from connectors.base import ConnectorContext
from connectors.errors import ConnectorSettingError, PermanentConnectorError, TransientConnectorError
from connectors.http_errors import raise_if_transient, reach
from connectors.sandbox_shop import OrderInfo, OrderLine

# Shopify releases an Admin API version each quarter and supports each for a year; pinned so a release never
# changes the shapes under us.
API_VERSION = "2026-10"
SHOP_DOMAIN = re.compile(r"^[a-z0-9][a-z0-9-]*\.myshopify\.com$")
KEY_MARKER = "[aios:{key}]"
# Transactions that took the customer's money, and so can be refunded.
PAYMENT_KINDS = frozenset({"SALE", "CAPTURE"})

ORDER_QUERY = """
query Order($query: String!) {
  orders(first: 5, query: $query) {
    nodes {
      id
      name
      email
      note
      tags
      currencyCode
      customer { displayName email }
      totalPriceSet { shopMoney { amount currencyCode } }
      totalRefundedSet { shopMoney { amount currencyCode } }
      refunds(first: 100) { id note totalRefundedSet { shopMoney { amount currencyCode } } }
      transactions(first: 20) { id kind status gateway amountSet { shopMoney { amount currencyCode } } }
    }
  }
}
"""
REFUND_MUTATION = """
mutation RefundCreate($input: RefundInput!, $key: String!) {
  refundCreate(input: $input) @idempotent(key: $key) {
    refund { id note totalRefundedSet { shopMoney { amount currencyCode } } }
    userErrors { field message }
  }
}
"""
TAGS_MUTATION = """
mutation TagsAdd($id: ID!, $tags: [String!]!) {
  tagsAdd(id: $id, tags: $tags) {
    node { id }
    userErrors { field message }
  }
}
"""
NOTE_MUTATION = """
mutation OrderUpdate($input: OrderInput!) {
  orderUpdate(input: $input) {
    order { id note }
    userErrors { field message }
  }
}
"""
SHOP_QUERY = "query Shop { shop { name myshopifyDomain } }"
LINES_QUERY = """
query OrderLines($id: ID!) {
  order(id: $id) {
    lineItems(first: 250) {
      nodes {
        id
        sku
        title
        quantity
        refundableQuantity
        discountedUnitPriceAfterAllDiscountsSet { shopMoney { amount currencyCode } }
      }
    }
  }
}
"""
SUGGESTED_REFUND_QUERY = """
query SuggestedRefund($id: ID!, $lines: [RefundLineItemInput!], $shipping: Money) {
  order(id: $id) {
    suggestedRefund(refundLineItems: $lines, shippingAmount: $shipping) {
      amountSet { shopMoney { amount currencyCode } }
      suggestedTransactions {
        gateway
        kind
        parentTransaction { id }
        amountSet { shopMoney { amount currencyCode } }
      }
    }
  }
}
"""
LOCATIONS_QUERY = """
query Locations {
  primary: location { id name }
  locations(first: 250) { nodes { id name } }
}
"""
INVENTORY_ITEM_QUERY = """
query InventoryItem($query: String!) {
  inventoryItems(first: 5, query: $query) { nodes { id sku } }
}
"""
INVENTORY_MUTATION = """
mutation InventoryAdjust($input: InventoryAdjustQuantitiesInput!, $key: String!) {
  inventoryAdjustQuantities(input: $input) @idempotent(key: $key) {
    inventoryAdjustmentGroup { id reason referenceDocumentUri changes { name delta quantityAfterChange } }
    userErrors { field message }
  }
}
"""
REFERENCE_URI = "aios://idempotency/{key}"


class _Refused(PermanentConnectorError):
    """Shopify is certain to refuse the action as it stands: said before approval, and raised at execution."""


class ShopifyShop:
    actions: ClassVar[tuple[type[Action], ...]] = (
        ShopRefund,
        ShopifyRefund,
        ShopifyTagOrder,
        ShopifyNote,
        ShopifyAdjustInventory,
    )
    settings_names: ClassVar[tuple[str, ...]] = ("SHOPIFY_SHOP", "SHOPIFY_ACCESS_TOKEN")

    @classmethod
    def configured(cls, context: ConnectorContext) -> Self | None:
        shop = context.settings.get("SHOPIFY_SHOP")
        token = context.settings.get("SHOPIFY_ACCESS_TOKEN")
        if not shop and not token:
            return None
        if not shop or not token:
            raise ConnectorSettingError("set both SHOPIFY_SHOP and SHOPIFY_ACCESS_TOKEN, or neither")
        shop = shop.strip().lower()
        if not SHOP_DOMAIN.match(shop):
            raise ConnectorSettingError(
                "SHOPIFY_SHOP must be the shop's myshopify.com domain, such as my-shop.myshopify.com "
                "(no https:// and no path)"
            )
        return cls(shop, token, timeout=context.http_timeout_seconds)

    def __init__(
        self,
        shop: str,
        access_token: str,
        *,
        timeout: float = 10.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._token = access_token
        self._client = httpx.AsyncClient(
            base_url=f"https://{shop}/admin/api/{API_VERSION}/",
            headers={"X-Shopify-Access-Token": access_token},
            timeout=timeout,
            transport=transport,
        )
        # Within this process, one refund at a time: looking for our key, checking what is left and refunding
        # are then one step. Across processes, Shopify's idempotent directive covers the same key.
        self._refunding = asyncio.Lock()

    async def close(self) -> None:
        await self._client.aclose()

    async def health(self) -> str:
        shop = (await self._graphql(SHOP_QUERY, {}))["shop"]
        return f"authenticated to {shop['name']} ({shop['myshopifyDomain']})"

    async def get_order(self, order_id: int) -> OrderInfo | None:
        order = await self._order(order_id)
        if order is None:
            return None
        customer = order.get("customer") or {}
        email = str(customer.get("email") or order.get("email") or "")
        items = await self._line_items(order)
        return OrderInfo(
            id=order_id,
            customer_name=str(customer.get("displayName") or email or "customer"),
            customer_email=email,
            item=str(items[0]["title"]) if items else f"order {order_id}",
            total=_money(order["totalPriceSet"]),
            refunded=_money(order["totalRefundedSet"]),
            currency=str(order["currencyCode"]),
            lines=tuple(_order_line(item) for item in items),
        )

    async def refusal(self, action: Action) -> str | None:
        """What Shopify is certain to refuse, found with reads only. ``shop.refund`` is checked by the returns
        agent against the order; a negative stock change is left alone, since Shopify lets stock go below
        zero."""
        try:
            if isinstance(action, ShopifyRefund):
                await self._suggested_refund(await self._existing_order(action.order_id), action)
            elif isinstance(action, ShopifyTagOrder | ShopifyNote):
                await self._existing_order(action.order_id)
            elif isinstance(action, ShopifyAdjustInventory):
                await self._inventory_item(action.sku)
                await self._location(action.location)
        except _Refused as refused:
            return str(refused)
        return None

    async def execute(self, action: Action, idempotency_key: str) -> dict[str, Any]:
        if isinstance(action, ShopifyTagOrder):
            order = await self._existing_order(action.order_id)
            data = await self._graphql(TAGS_MUTATION, {"id": order["id"], "tags": list(action.tags)})
            _refuse_user_errors(data["tagsAdd"])
            return {"order_id": action.order_id, "tags": sorted(set(order["tags"]) | set(action.tags))}
        if isinstance(action, ShopifyNote):
            order = await self._existing_order(action.order_id)
            data = await self._graphql(NOTE_MUTATION, {"input": {"id": order["id"], "note": action.note}})
            _refuse_user_errors(data["orderUpdate"])
            return {"order_id": action.order_id, "note": action.note}
        if isinstance(action, ShopifyAdjustInventory):
            return await self._adjust_inventory(action, idempotency_key)
        async with self._refunding:
            if isinstance(action, ShopifyRefund):
                return await self._refund_items(action, idempotency_key)
            assert isinstance(action, ShopRefund)
            return await self._refund(action, idempotency_key)

    async def lookup(self, action: Action, idempotency_key: str) -> dict[str, Any] | None:
        if isinstance(action, ShopifyAdjustInventory):
            # Adjustments can be read back (inventoryHistory) only in Shopify's unstable API version, not in a
            # supported one; executing again under the same key is answered by the @idempotent directive with
            # the first adjustment, so it changes stock once.
            return None
        assert isinstance(action, ShopRefund | ShopifyRefund | ShopifyTagOrder | ShopifyNote)
        order = await self._order(action.order_id)
        if order is None:
            return None
        if isinstance(action, ShopifyTagOrder):
            has_all = set(action.tags) <= set(order["tags"])
            return {"order_id": action.order_id, "tags": sorted(order["tags"])} if has_all else None
        if isinstance(action, ShopifyNote):
            return (
                {"order_id": action.order_id, "note": action.note} if order["note"] == action.note else None
            )
        landed = _with_key(order, idempotency_key)
        return _refund_result(landed, action.order_id, replayed=True) if landed is not None else None

    async def _refund(self, action: ShopRefund, key: str) -> dict[str, Any]:
        order = await self._existing_order(action.order_id)
        landed = _with_key(order, key)
        if landed is not None:
            return _refund_result(landed, action.order_id, replayed=True)
        if order["currencyCode"] != "USD":
            raise PermanentConnectorError(
                f"order {action.order_id} was paid in {order['currencyCode']}; refunds are made in USD only"
            )
        amount = Decimal(str(action.amount))
        left = Decimal(order["totalPriceSet"]["shopMoney"]["amount"]) - Decimal(
            order["totalRefundedSet"]["shopMoney"]["amount"]
        )
        if amount > left:
            raise PermanentConnectorError(
                f"order {action.order_id} has ${left:,.2f} left to refund in Shopify; ${amount:,.2f} is too much"
            )
        payment = next(
            (t for t in order["transactions"] if t["kind"] in PAYMENT_KINDS and t["status"] == "SUCCESS"),
            None,
        )
        if payment is None:
            raise PermanentConnectorError(
                f"order {action.order_id} has no captured payment in Shopify to refund against"
            )
        refund_input = {
            "orderId": order["id"],
            "note": f"{action.reason} {KEY_MARKER.format(key=key)}",
            "notify": False,
            "transactions": [
                {
                    "orderId": order["id"],
                    "parentId": payment["id"],
                    "gateway": payment["gateway"],
                    "kind": "REFUND",
                    "amount": f"{amount:.2f}",
                }
            ],
        }
        data = await self._graphql(REFUND_MUTATION, {"input": refund_input, "key": key})
        _refuse_user_errors(data["refundCreate"])
        return _refund_result(data["refundCreate"]["refund"], action.order_id, replayed=False)

    async def _refund_items(self, action: ShopifyRefund, key: str) -> dict[str, Any]:
        order = await self._existing_order(action.order_id)
        landed = _with_key(order, key)
        if landed is not None:
            return _refund_result(landed, action.order_id, replayed=True)
        lines, suggested = await self._suggested_refund(order, action)
        refund_input: dict[str, Any] = {
            "orderId": order["id"],
            "note": f"{action.note} {KEY_MARKER.format(key=key)}",
            "notify": False,
            "refundLineItems": lines,
            "transactions": [
                {
                    "orderId": order["id"],
                    "parentId": t["parentTransaction"]["id"],
                    "gateway": t["gateway"],
                    "kind": "REFUND",
                    "amount": t["amountSet"]["shopMoney"]["amount"],
                }
                for t in suggested["suggestedTransactions"]
            ],
        }
        if action.shipping:
            refund_input["shipping"] = {"amount": f"{action.shipping:.2f}"}
        data = await self._graphql(REFUND_MUTATION, {"input": refund_input, "key": key})
        _refuse_user_errors(data["refundCreate"])
        return _refund_result(data["refundCreate"]["refund"], action.order_id, replayed=False)

    async def _suggested_refund(
        self, order: Mapping[str, Any], action: ShopifyRefund
    ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
        """The refund's RefundLineItemInputs and Shopify's suggestion for them, refused unless Shopify's total
        is the action's amount."""
        items = await self._line_items(order)
        lines = [_refund_line(action.order_id, line, items, action.restock) for line in action.lines]
        if action.restock:
            primary = (await self._graphql(LOCATIONS_QUERY, {}))["primary"]
            lines = [{**line, "locationId": primary["id"]} for line in lines]
        shipping = {"amount": f"{action.shipping:.2f}", "currencyCode": "USD"} if action.shipping else None
        suggested: dict[str, Any] = (
            await self._graphql(
                SUGGESTED_REFUND_QUERY, {"id": order["id"], "lines": lines, "shipping": shipping}
            )
        )["order"]["suggestedRefund"]
        computed = Decimal(suggested["amountSet"]["shopMoney"]["amount"])
        if abs(computed - Decimal(str(action.amount))) > Decimal("0.01"):
            what = "these items and shipping" if action.shipping else "these items"
            raise _Refused(
                f"Shopify computes ${computed:,.2f} for {what} on order {action.order_id} (taxes and "
                f"discounts included), not ${action.amount:,.2f}; propose the refund again with amount "
                f"{computed:.2f}"
            )
        return lines, suggested

    async def _line_items(self, order: Mapping[str, Any]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = (await self._graphql(LINES_QUERY, {"id": order["id"]}))["order"][
            "lineItems"
        ]["nodes"]
        return items

    async def _inventory_item(self, sku: str) -> dict[str, Any]:
        items = (await self._graphql(INVENTORY_ITEM_QUERY, {"query": f"sku:{json.dumps(sku)}"}))[
            "inventoryItems"
        ]["nodes"]
        # The search matches loosely, as for orders: only the exact SKU is the item meant.
        item: dict[str, Any] | None = next((i for i in items if i["sku"] == sku), None)
        if item is None:
            raise _Refused(f"no inventory item in Shopify has the SKU {sku!r}")
        return item

    async def _adjust_inventory(self, action: ShopifyAdjustInventory, key: str) -> dict[str, Any]:
        item = await self._inventory_item(action.sku)
        location = await self._location(action.location)
        adjust_input = {
            "name": "available",
            "reason": action.reason,
            "referenceDocumentUri": REFERENCE_URI.format(key=key),
            "changes": [
                {
                    "inventoryItemId": item["id"],
                    "locationId": location["id"],
                    "delta": action.delta,
                    # A relative change is right whatever the stock is now, so no compare-and-swap check.
                    "changeFromQuantity": None,
                }
            ],
        }
        data = await self._graphql(INVENTORY_MUTATION, {"input": adjust_input, "key": key})
        payload = data["inventoryAdjustQuantities"]
        _refuse_user_errors(payload)
        group = payload["inventoryAdjustmentGroup"]
        available = next(c for c in group["changes"] if c["name"] == "available")
        return {
            "adjustment_id": group["id"],
            "sku": action.sku,
            "location": location["name"],
            "delta": action.delta,
            "available": available["quantityAfterChange"],
        }

    async def _location(self, wanted: str | None) -> dict[str, Any]:
        data = await self._graphql(LOCATIONS_QUERY, {})
        if wanted is None:
            primary: dict[str, Any] = data["primary"]
            return primary
        nodes: list[dict[str, Any]] = data["locations"]["nodes"]
        found = next(
            (n for n in nodes if n["name"].casefold() == wanted.casefold() or _numeric_id(n["id"]) == wanted),
            None,
        )
        if found is None:
            names = ", ".join(n["name"] for n in nodes)
            raise _Refused(f"Shopify has no location {wanted!r}; its locations: {names}")
        return found

    async def _existing_order(self, order_id: int) -> dict[str, Any]:
        order = await self._order(order_id)
        if order is None:
            raise _Refused(f"order {order_id} does not exist in Shopify (no order named #{order_id})")
        return order

    async def _order(self, order_id: int) -> dict[str, Any] | None:
        name = f"#{order_id}"
        data = await self._graphql(ORDER_QUERY, {"query": f"name:{name}"})
        # Shopify's search matches loosely; only the order with exactly this name is the one meant.
        found: list[dict[str, Any]] = [o for o in data["orders"]["nodes"] if o["name"] == name]
        return found[0] if found else None

    async def _graphql(self, query: str, variables: Mapping[str, Any]) -> dict[str, Any]:
        response = await reach(
            self._client.post("graphql.json", json={"query": query, "variables": variables}), "Shopify"
        )
        status = response.status_code
        if status in (401, 403):
            raise PermanentConnectorError(
                f"Shopify refused SHOPIFY_ACCESS_TOKEN ({status}); set an Admin API access token (shpat_…) "
                "with the read_orders, write_orders scopes (for stock also read_inventory, write_inventory, "
                "read_locations)"
            )
        raise_if_transient(
            response, "Shopify is rate limiting" if status == 429 else f"Shopify answered {status}"
        )
        if status >= 400:
            raise PermanentConnectorError(
                f"Shopify refused the request ({status}): {self._clean(response.text)}"
            )
        body: dict[str, Any] = response.json()
        errors: list[dict[str, Any]] = body.get("errors") or []
        if any((e.get("extensions") or {}).get("code") == "THROTTLED" for e in errors):
            raise TransientConnectorError(
                "Shopify is throttling: query cost over budget", _throttle_wait(body)
            )
        if errors:
            messages = "; ".join(str(e.get("message")) for e in errors)
            raise PermanentConnectorError(f"Shopify refused the request: {self._clean(messages)}")
        data: dict[str, Any] = body["data"]
        return data

    def _clean(self, text: str) -> str:
        # Shopify never echoes the token, but a proxy in front of it may.
        return text.replace(self._token, "[SHOPIFY_ACCESS_TOKEN]")[:500]


def _refuse_user_errors(payload: Mapping[str, Any]) -> None:
    errors = payload.get("userErrors") or []
    if errors:
        raise PermanentConnectorError("Shopify refused: " + "; ".join(str(e["message"]) for e in errors))


def _refund_line(
    order_id: int, line: ShopifyRefundLine, items: list[dict[str, Any]], restock: bool
) -> dict[str, Any]:
    """The RefundLineItemInput for one requested line, refused when the order has no such line or too few
    units left to refund."""
    matches = [
        i
        for i in items
        if (i["sku"] == line.sku if line.sku is not None else _numeric_id(i["id"]) == str(line.line_item_id))
    ]
    if not matches:
        raise _Refused(f"order {order_id} has no {line.label()} in Shopify")
    if len(matches) > 1:
        raise _Refused(
            f"order {order_id} has {len(matches)} lines with {line.label()}; name one by line_item_id: "
            + ", ".join(_numeric_id(i["id"]) for i in matches)
        )
    [item] = matches
    if line.quantity > item["refundableQuantity"]:
        raise _Refused(
            f"order {order_id} has {item['refundableQuantity']} of {line.label()} ({item['title']}) left to "
            f"refund, not {line.quantity}"
        )
    return {
        "lineItemId": item["id"],
        "quantity": line.quantity,
        "restockType": "RETURN" if restock else "NO_RESTOCK",
    }


def _numeric_id(gid: str) -> str:
    """``gid://shopify/LineItem/123`` → ``123``, the id Shopify's admin shows."""
    return gid.rsplit("/", 1)[-1]


def _order_line(item: Mapping[str, Any]) -> OrderLine:
    return OrderLine(
        line_item_id=int(_numeric_id(item["id"])),
        sku=item.get("sku") or None,
        title=str(item["title"]),
        quantity=int(item["quantity"]),
        refundable_quantity=int(item["refundableQuantity"]),
        unit_price=_money(item["discountedUnitPriceAfterAllDiscountsSet"]),
    )


def _throttle_wait(body: Mapping[str, Any]) -> float | None:
    """Seconds until the bucket holds what the query asked for: (requested − available) / restore rate."""
    cost = (body.get("extensions") or {}).get("cost") or {}
    throttle = cost.get("throttleStatus") or {}
    try:
        missing = float(cost["requestedQueryCost"]) - float(throttle["currentlyAvailable"])
        return max(missing, 0.0) / float(throttle["restoreRate"])
    except (KeyError, TypeError, ValueError, ZeroDivisionError):
        return None


def _money(money_set: Mapping[str, Any]) -> float:
    return float(Decimal(str(money_set["shopMoney"]["amount"])))


def _with_key(order: Mapping[str, Any], key: str) -> dict[str, Any] | None:
    marker = KEY_MARKER.format(key=key)
    return next((r for r in order["refunds"] if marker in (r.get("note") or "")), None)


def _refund_result(refund: Mapping[str, Any], order_id: int, *, replayed: bool) -> dict[str, Any]:
    money = refund["totalRefundedSet"]["shopMoney"]
    return {
        "refund_id": refund["id"],
        "order_id": order_id,
        "amount": float(Decimal(str(money["amount"]))),
        "currency": money["currencyCode"],
        "replayed": replayed,
    }
