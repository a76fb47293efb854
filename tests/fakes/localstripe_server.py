"""A real localstripe process (a stateful Stripe stand-in) on a free port, and the shop's orders seeded into it.

localstripe speaks Stripe's REST API to the official SDK, but it ignores Idempotency-Key, does not refuse
over-refunding, rejects a refund's ``reason``, has no search API, and writes its state to /tmp/localstripe.pickle
(read back only by its own entry point, which is not used here; ``reset`` empties the store between tests). A
payment intent's ``description`` and ``receipt_email``, which it lacks, are added here as Stripe has them: kept
on the intent and copied to the charge it makes.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from typing import Any, Self

import httpx
import stripe

from connectors.sandbox_orders import SEED_ORDERS
from storage.records import SandboxOrder
from tests.fakes.aios_process import free_port
from tests.fakes.loopback import wait_until

# localstripe's own entry point binds [::], which fails where IPv6 is off; its app on 127.0.0.1 does the same
# work. Serving the app without that entry point never loads the pickled state, like --from-scratch.
SERVE = """
import sys
from aiohttp import web
from localstripe.resources import PaymentIntent
from localstripe.server import app

intent_init, create_charge = PaymentIntent.__init__, PaymentIntent._create_charge

def init(self, description=None, receipt_email=None, **params):
    intent_init(self, **params)
    self.description, self.receipt_email = description, receipt_email

def charge(self, on_failure_now):
    create_charge(self, on_failure_now)
    self.latest_charge.description = self.description
    self.latest_charge.receipt_email = self.receipt_email

PaymentIntent.__init__, PaymentIntent._create_charge = init, charge
web.run_app(app, host='127.0.0.1', port=int(sys.argv[1]), print=None, access_log=None)
"""
API_KEY = "sk_test_aios_localstripe_4eC39HqLyjWDarjtT1zdp7dc"


class LocalStripe:
    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> Self:
        self._process = subprocess.Popen(
            [sys.executable, "-c", SERVE, str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_until(self._answers, 20, lambda: f"localstripe did not answer on {self.url}")
        return self

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _answers(self) -> bool:
        assert self._process is not None
        if self._process.poll() is not None:
            raise AssertionError(f"localstripe exited with {self._process.returncode}")
        try:
            return httpx.get(f"{self.url}/v1/balance", auth=(API_KEY, "")).status_code == 200
        except httpx.TransportError:
            return False

    def reset(self) -> None:
        """Forget every object (localstripe's own endpoint for it)."""
        httpx.delete(f"{self.url}/_config/data").raise_for_status()

    @asynccontextmanager
    async def client(self) -> AsyncIterator[Any]:
        """The official SDK's ``v1`` services, pointed at this server."""
        http = stripe.HTTPXClient()
        try:
            yield stripe.StripeClient(
                API_KEY, base_addresses={"api": self.url}, http_client=http, max_network_retries=0
            ).v1
        finally:
            await http.close_async()  # type: ignore[no-untyped-call]

    async def seed(self, orders: Iterable[SandboxOrder] = SEED_ORDERS) -> dict[int, str]:
        """Each order as a customer and a succeeded payment intent tagged with its order number; the payment
        intents' ids by order."""
        async with self.client() as v1:
            return {order.id: await _order(v1, order) for order in orders}

    async def refunds(self, payment_intent: str) -> list[dict[str, Any]]:
        """The payment intent's refunds, as the SDK lists them."""
        async with self.client() as v1:
            page = await v1.refunds.list_async({"payment_intent": payment_intent, "limit": 100})
            return [refund.to_dict() async for refund in page.auto_paging_iter()]


async def _order(v1: Any, order: SandboxOrder) -> str:
    customer = await v1.customers.create_async({"name": order.customer_name, "email": order.customer_email})
    intent = await v1.payment_intents.create_async(
        {
            "amount": round(order.total * 100),
            "currency": "usd",
            "customer": customer.id,
            "payment_method": "pm_card_visa",
            "confirm": True,
            "metadata": {"order_id": str(order.id), "item": order.item},
        }
    )
    return str(intent.id)
