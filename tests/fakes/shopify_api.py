"""A small stateful stand-in for Shopify's Admin GraphQL API: it answers the operations the Shopify connector sends,
in the shapes shopify.dev documents, and honours the ``@idempotent(key:)`` directive as Shopify does.

It is an httpx transport (``FakeShopify().transport``), so a connector under test talks HTTP to it with no port;
``respx`` routes the bot's calls to ``handle`` in end-to-end tests. ``fail_next`` queues raw answers (429,
THROTTLED, 401, …) served before the fake's own.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import httpx

from connectors.sandbox_shop import SEED_ORDERS

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

    @property
    def gid(self) -> str:
        return f"gid://shopify/Order/{self.number}0"

    @property
    def refunded(self) -> Decimal:
        return sum((Decimal(r["totalRefundedSet"]["shopMoney"]["amount"]) for r in self.refunds), Decimal(0))

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
            "lineItems": {"nodes": [{"title": self.item}]},
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
        self.refund_creates = 0  # refundCreate calls that made a refund (replays of a key do not count)
        self.requests: list[dict[str, Any]] = []
        self._failures: list[httpx.Response] = []
        self._by_key: dict[str, dict[str, Any]] = {}
        self.transport = httpx.MockTransport(self.handle)

    def fail_next(self, response: httpx.Response) -> None:
        self._failures.append(response)

    def handle(self, request: httpx.Request) -> httpx.Response:
        if request.headers.get("X-Shopify-Access-Token") != TOKEN:
            return httpx.Response(401, json={"errors": "[API] Invalid API key or access token"})
        body = json.loads(request.content)
        self.requests.append(body)
        if self._failures:
            return self._failures.pop(0)
        operation = OPERATION.match(body["query"])
        assert operation is not None, "every operation the connector sends is named"
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
        self.refund_creates += 1
        refund = {
            "id": f"gid://shopify/Refund/{900 + self.refund_creates}",
            "note": refund_input.get("note"),
            "totalRefundedSet": _money(amount, order.currency),
        }
        order.refunds.append(refund)
        self._by_key[key] = refund
        return {"refundCreate": {"refund": refund, "userErrors": []}}

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
