"""A small stateful stand-in for Shopify's Admin GraphQL API: it answers the operations the Shopify connector sends,
in the shapes shopify.dev documents, and honours the ``@idempotent(key:)`` directive as Shopify does.

Each seeded order has one line item of two units (SKU ``SKU-<order>``) at half the order's total, no tax; the
shop has two locations ("Main warehouse", the primary, and "Retail store") stocking each of those SKUs.

It is an httpx transport (``FakeShopify().transport``), so a connector under test talks HTTP to it with no port;
``respx`` routes the bot's calls to ``handle`` in end-to-end tests. ``fail_next`` queues raw answers (429,
THROTTLED, 401, …) served before the fake's own, to any request or to one named operation.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

from connectors.sandbox_orders import SEED_ORDERS

SHOP = "aios-test.myshopify.com"
TOKEN = "shpat_0123456789abcdefAiosSecretDoNotLeak"
OPERATION = re.compile(r"^\s*(?:query|mutation)\s+(\w+)")


@dataclass
class FakeOrder:
    number: int
    customer_name: str
    email: str
    item: str
    total: Decimal
    currency: str = "USD"
    note: str | None = None
    tags: list[str] = field(default_factory=list)
    refunds: list[dict[str, Any]] = field(default_factory=list)
    refunded_units: int = 0

    @property
    def gid(self) -> str:
        return f"gid://shopify/Order/{self.number}0"

    @property
    def refunded(self) -> Decimal:
        return sum((Decimal(r["totalRefundedSet"]["shopMoney"]["amount"]) for r in self.refunds), Decimal(0))

    @property
    def line_gid(self) -> str:
        return f"gid://shopify/LineItem/{self.number}1"

    @property
    def sku(self) -> str:
        return f"SKU-{self.number}"

    def line_nodes(self) -> list[dict[str, Any]]:
        return [
            {
                "id": self.line_gid,
                "sku": self.sku,
                "title": self.item,
                "quantity": 2,
                "refundableQuantity": 2 - self.refunded_units,
                "discountedUnitPriceAfterAllDiscountsSet": _money(self.total / 2, self.currency),
            }
        ]

    def node(self) -> dict[str, Any]:
        return {
            "id": self.gid,
            "name": f"#{self.number}",
            "email": self.email,
            "note": self.note,
            "tags": list(self.tags),
            "currencyCode": self.currency,
            "customer": {"displayName": self.customer_name, "email": self.email},
            "totalPriceSet": _money(self.total, self.currency),
            "totalRefundedSet": _money(self.refunded, self.currency),
            "refunds": list(self.refunds),
            "transactions": [
                {
                    "id": f"gid://shopify/OrderTransaction/{self.number}1",
                    "kind": "SALE",
                    "status": "SUCCESS",
                    "gateway": "shopify_payments",
                    "amountSet": _money(self.total, self.currency),
                }
            ],
        }


class FakeShopify:
    def __init__(self) -> None:
        self.orders = {
            o.id: FakeOrder(o.id, o.customer_name, o.customer_email, o.item, Decimal(str(o.total)))
            for o in SEED_ORDERS
        }
        self.locations = {
            "gid://shopify/Location/1": "Main warehouse",
            "gid://shopify/Location/2": "Retail store",
        }
        self.primary_location = "gid://shopify/Location/1"
        # Available units per (SKU, location id).
        self.stock = {(o.sku, loc): 10 for o in self.orders.values() for loc in self.locations}
        self.adjustments = 0  # inventoryAdjustQuantities calls that changed stock (replays do not count)
        self.refund_creates = 0  # refundCreate calls that made a refund (replays of a key do not count)
        self.requests: list[dict[str, Any]] = []
        self._adjusted_by_key: dict[str, dict[str, Any]] = {}
        self._failures: list[tuple[str | None, httpx.Response]] = []
        self._by_key: dict[str, dict[str, Any]] = {}
        self.transport = httpx.MockTransport(self.handle)

    def fail_next(self, response: httpx.Response, operation: str | None = None) -> None:
        """Answer the next request (or the next of the named ``operation``) with ``response``."""
        self._failures.append((operation, response))

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("X-Shopify-Access-Token") != TOKEN:
            return httpx.Response(401, json={"errors": "[API] Invalid API key or access token"})
        body = json.loads(request.content)
        self.requests.append(body)
        operation = OPERATION.match(body["query"])
        assert operation is not None, "every operation the connector sends is named"
        if self._failures and self._failures[0][0] in (None, operation.group(1)):
            return self._failures.pop(0)[1]
        answer = getattr(self, f"_{operation.group(1)}")(body["query"], body.get("variables") or {})
        return httpx.Response(200, json={"data": answer, "extensions": _cost()})

    def _Shop(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        return {"shop": {"name": "AIOS Test Shop", "myshopifyDomain": SHOP}}

    def _Order(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        wanted = variables["query"].removeprefix("name:").lstrip("#")
        # Shopify's search is loose: "name:1001" also finds "#10010"; the connector picks the exact name.
        nodes = [o.node() for n, o in self.orders.items() if str(n).startswith(wanted)]
        return {"orders": {"nodes": nodes}}

    def _RefundCreate(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        assert "@idempotent(key: $key)" in query
        key = variables["key"]
        if key in self._by_key:
            return {"refundCreate": {"refund": self._by_key[key], "userErrors": []}}
        refund_input = variables["input"]
        order = self._order(refund_input["orderId"])
        amount = sum((Decimal(t["amount"]) for t in refund_input["transactions"]), Decimal(0))
        if order is None or amount > order.total - order.refunded:
            message = "Order does not exist" if order is None else "Refund amount exceeds refundable amount"
            return {
                "refundCreate": {"refund": None, "userErrors": [{"field": ["amount"], "message": message}]}
            }
        for line in refund_input.get("refundLineItems") or []:
            if line["lineItemId"] != order.line_gid or line["quantity"] > 2 - order.refunded_units:
                return {
                    "refundCreate": {
                        "refund": None,
                        "userErrors": [
                            {"field": ["refundLineItems"], "message": "Invalid line item quantity"}
                        ],
                    }
                }
            order.refunded_units += line["quantity"]
            if line["restockType"] == "RETURN":
                self.stock[(order.sku, line["locationId"])] += line["quantity"]
        self.refund_creates += 1
        refund = {
            "id": f"gid://shopify/Refund/{900 + self.refund_creates}",
            "note": refund_input.get("note"),
            "totalRefundedSet": _money(amount, order.currency),
        }
        order.refunds.append(refund)
        self._by_key[key] = refund
        return {"refundCreate": {"refund": refund, "userErrors": []}}

    def _OrderLines(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        order = self._order(variables["id"])
        return {"order": {"lineItems": {"nodes": order.line_nodes()}} if order is not None else None}

    def _SuggestedRefund(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        order = self._order(variables["id"])
        assert order is not None
        units = sum(line["quantity"] for line in variables["lines"] or [])
        shipping = Decimal((variables["shipping"] or {}).get("amount", "0"))
        amount = order.total / 2 * units + shipping
        return {
            "order": {
                "suggestedRefund": {
                    "amountSet": _money(amount, order.currency),
                    "suggestedTransactions": [
                        {
                            "gateway": "shopify_payments",
                            "kind": "SUGGESTED_REFUND",
                            "parentTransaction": {"id": f"gid://shopify/OrderTransaction/{order.number}1"},
                            "amountSet": _money(amount, order.currency),
                        }
                    ],
                }
            }
        }

    def _Locations(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        nodes = [{"id": gid, "name": name} for gid, name in self.locations.items()]
        return {
            "primary": {"id": self.primary_location, "name": self.locations[self.primary_location]},
            "locations": {"nodes": nodes},
        }

    def _InventoryItem(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        wanted = json.loads(variables["query"].removeprefix("sku:"))
        skus = sorted({sku for sku, _ in self.stock if sku.startswith(wanted)})
        return {"inventoryItems": {"nodes": [{"id": _item_gid(sku), "sku": sku} for sku in skus]}}

    def _InventoryAdjust(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        # Required from 2026-04: without the directive Shopify refuses the mutation.
        assert "@idempotent(key: $key)" in query
        key = variables["key"]
        if key in self._adjusted_by_key:
            return {"inventoryAdjustQuantities": self._adjusted_by_key[key]}
        adjust = variables["input"]
        assert adjust["name"] == "available"
        if adjust["reason"] not in INVENTORY_REASONS:
            return _adjust_error(["input", "reason"], "The specified reason is invalid.")
        changes = []
        for change in adjust["changes"]:
            assert "changeFromQuantity" in change, "mandatory from 2026-04, even when null"
            sku = next((s for s, _ in self.stock if _item_gid(s) == change["inventoryItemId"]), None)
            if sku is None or (sku, change["locationId"]) not in self.stock:
                return _adjust_error(["input", "changes"], "The specified inventory item could not be found.")
            self.stock[(sku, change["locationId"])] += change["delta"]
            changes.append(
                {
                    "name": "available",
                    "delta": change["delta"],
                    "quantityAfterChange": self.stock[(sku, change["locationId"])],
                }
            )
        self.adjustments += 1
        payload = {
            "inventoryAdjustmentGroup": {
                "id": f"gid://shopify/InventoryAdjustmentGroup/{700 + self.adjustments}",
                "reason": adjust["reason"],
                "referenceDocumentUri": adjust.get("referenceDocumentUri"),
                "changes": changes,
            },
            "userErrors": [],
        }
        self._adjusted_by_key[key] = payload
        return {"inventoryAdjustQuantities": payload}

    def _TagsAdd(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        order = self._order(variables["id"])
        if order is None:
            return {
                "tagsAdd": {"node": None, "userErrors": [{"field": ["id"], "message": "Order not found"}]}
            }
        order.tags.extend(t for t in variables["tags"] if t not in order.tags)
        return {"tagsAdd": {"node": {"id": order.gid}, "userErrors": []}}

    def _OrderUpdate(self, query: str, variables: dict[str, Any]) -> dict[str, Any]:
        order = self._order(variables["input"]["id"])
        if order is None:
            return {
                "orderUpdate": {
                    "order": None,
                    "userErrors": [{"field": ["id"], "message": "Order not found"}],
                }
            }
        order.note = variables["input"]["note"]
        return {"orderUpdate": {"order": {"id": order.gid, "note": order.note}, "userErrors": []}}

    def _order(self, gid: str) -> FakeOrder | None:
        return next((o for o in self.orders.values() if o.gid == gid), None)


INVENTORY_REASONS = frozenset(
    {
        "correction",
        "cycle_count_available",
        "damaged",
        "movement_created",
        "movement_updated",
        "movement_received",
        "movement_canceled",
        "other",
        "promotion",
        "quality_control",
        "received",
        "reservation_created",
        "reservation_deleted",
        "reservation_updated",
        "restock",
        "safety_stock",
        "shrinkage",
    }
)


def _item_gid(sku: str) -> str:
    return f"gid://shopify/InventoryItem/{sku.removeprefix('SKU-')}5"


def _adjust_error(path: list[str], message: str) -> dict[str, Any]:
    return {
        "inventoryAdjustQuantities": {
            "inventoryAdjustmentGroup": None,
            "userErrors": [{"field": path, "message": message}],
        }
    }


def throttled(requested: int, available: int, restore_rate: float) -> httpx.Response:
    """Shopify's answer when a query costs more than the bucket holds (HTTP 200, a THROTTLED error)."""
    return httpx.Response(
        200,
        json={
            "errors": [{"message": "Throttled", "extensions": {"code": "THROTTLED"}}],
            "extensions": _cost(requested, available, restore_rate),
        },
    )


def _cost(requested: int = 10, available: int = 1990, restore_rate: float = 100.0) -> dict[str, Any]:
    return {
        "cost": {
            "requestedQueryCost": requested,
            "actualQueryCost": None if available < requested else requested,
            "throttleStatus": {
                "maximumAvailable": 2000.0,
                "currentlyAvailable": available,
                "restoreRate": restore_rate,
            },
        }
    }


def _money(amount: Decimal, currency: str) -> dict[str, Any]:
    return {"shopMoney": {"amount": f"{amount:.2f}", "currencyCode": currency}}
