"""A local shop REST API (Stripe-style refunds with Idempotency-Key) that misbehaves on purpose.

A share of refund requests fail, chosen by a seeded random generator: 429 with Retry-After, 500 before doing
anything, 503 after the refund was made, or a response that never arrives in time (after the refund was
made). The last two are the dangerous ones: the work landed, the client cannot know, and only the idempotency
key keeps a retry from refunding twice."""

from __future__ import annotations

import asyncio
import itertools
import random
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.loopback import LoopbackServer

ORDERS = {
    1001: ("Maya Patel", "maya@example.com", "Ceramic pour-over set", 320.0),
    1002: ("Tom Becker", "tom@example.com", "Linen apron", 48.0),
    1003: ("Ana Lima", "ana@example.com", "Countertop blender", 129.0),
    1004: ("Sam Okafor", "sam@example.com", "Cast-iron skillet", 75.5),
    1005: ("Lena Schulz", "lena@example.com", "Espresso grinder", 410.0),
}
FAULTS = ("rate_limited", "error_before", "error_after", "slow_after")


@dataclass
class Refund:
    id: str
    order_id: int
    amount: float
    idempotency_key: str


class FlakyShopApi(LoopbackServer):
    def __init__(self, *, fault_rate: float, seed: int, slow_seconds: float = 1.0) -> None:
        super().__init__("flaky-shop-api")
        self.fault_rate = fault_rate
        self.slow_seconds = slow_seconds
        self.refunds: dict[str, Refund] = {}  # by idempotency key
        self.refund_requests = 0
        self.faults: dict[str, int] = dict.fromkeys(FAULTS, 0)
        self._random = random.Random(seed)
        self._ids = itertools.count(1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/orders/{id}", self._order)
        app.router.add_post("/refunds", self._refund)
        app.router.add_get("/refunds", self._find)

    async def _order(self, request: web.Request) -> web.Response:
        order_id = int(request.match_info["id"])
        if order_id not in ORDERS:
            return web.json_response({"error": {"message": "no such order"}}, status=404)
        name, email, item, total = ORDERS[order_id]
        refunded = sum(r.amount for r in self.refunds.values() if r.order_id == order_id)
        return web.json_response(
            {
                "id": order_id,
                "customer_name": name,
                "customer_email": email,
                "item": item,
                "total": total,
                "refunded": refunded,
            }
        )

    async def _refund(self, request: web.Request) -> web.Response:
        key = request.headers.get("Idempotency-Key")
        if not key:
            return web.json_response({"error": {"message": "Idempotency-Key is required"}}, status=400)
        body = await request.json()
        with self._lock:
            self.refund_requests += 1
            fault = self._random.choice(FAULTS) if self._random.random() < self.fault_rate else None
            if fault:
                self.faults[fault] += 1
        if fault == "rate_limited":
            return web.json_response(
                {"error": {"message": "slow down"}}, status=429, headers={"Retry-After": "0.01"}
            )
        if fault == "error_before":
            return web.json_response({"error": {"message": "internal error"}}, status=500)
        with self._lock:
            refund = self.refunds.get(key)
            if refund is None:
                refund = Refund(f"re_{next(self._ids)}", int(body["order_id"]), float(body["amount"]), key)
                self.refunds[key] = refund
        if fault == "error_after":
            return web.json_response({"error": {"message": "upstream timeout"}}, status=503)
        if fault == "slow_after":
            await asyncio.sleep(self.slow_seconds)
        return web.json_response(_refund(refund))

    async def _find(self, request: web.Request) -> web.Response:
        key = request.query.get("idempotency_key", "")
        with self._lock:
            refund = self.refunds.get(key)
        return web.json_response({"data": [_refund(refund)] if refund else []})


def _refund(refund: Refund) -> dict[str, Any]:
    return {"id": refund.id, "order_id": refund.order_id, "amount": refund.amount}
