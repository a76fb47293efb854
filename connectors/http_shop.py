"""A shop behind a REST API (Stripe-style refunds), used instead of the sandbox when AIOS_SHOP_API_URL is set.

    GET  /orders/{id}                       → {"id", "customer_name", "customer_email", "item", "total", "refunded"}
    POST /refunds   Idempotency-Key: <key>  {"order_id", "amount", "reason"} → {"id", "order_id", "amount"}
    GET  /refunds?idempotency_key=<key>     → {"data": [refund, …]}

The idempotency key goes to the API with every attempt, so a retry of a request that did land (a timeout, a
lost response) returns the first refund instead of making a second. 429 (honouring Retry-After), 5xx and
timeouts are transient; other 4xx are permanent.
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx

from connectors.actions import Action, ShopRefund
from connectors.base import ConnectorContext
from connectors.errors import PermanentConnectorError
from connectors.http_errors import raise_if_transient, reach
from connectors.sandbox_shop import OrderInfo


class HttpShop:
    actions: ClassVar[tuple[type[Action], ...]] = (ShopRefund,)
    settings_names: ClassVar[tuple[str, ...]] = ("AIOS_SHOP_API_URL",)

    @classmethod
    def configured(cls, context: ConnectorContext) -> HttpShop | None:
        real = ("STRIPE_API_KEY", "SHOPIFY_SHOP", "SHOPIFY_ACCESS_TOKEN")
        if not context.shop_api_url or any(context.settings.get(n) for n in real):
            return None  # Stripe or Shopify, when set, is the shop
        headers = {"Authorization": f"Bearer {context.shop_api_key}"} if context.shop_api_key else {}
        return cls(
            httpx.AsyncClient(
                base_url=context.shop_api_url, headers=headers, timeout=context.http_timeout_seconds
            )
        )

    def __init__(self, client: httpx.AsyncClient) -> None:
        self._client = client

    async def close(self) -> None:
        await self._client.aclose()

    async def get_order(self, order_id: int) -> OrderInfo | None:
        response = await self._request("GET", f"/orders/{order_id}")
        if response.status_code == 404:
            return None
        body = _json(response)
        return OrderInfo(
            int(body["id"]),
            body["customer_name"],
            body["customer_email"],
            body["item"],
            float(body["total"]),
            float(body.get("refunded", 0.0)),
            str(body.get("currency", "USD")).upper(),
        )

    async def execute(self, action: Action, idempotency_key: str) -> dict[str, Any]:
        assert isinstance(action, ShopRefund)
        response = await self._request(
            "POST",
            "/refunds",
            json=action.model_dump(mode="json"),
            headers={"Idempotency-Key": idempotency_key},
        )
        return _refund_result(_json(response))

    async def lookup(self, action: Action, idempotency_key: str) -> dict[str, Any] | None:
        response = await self._request("GET", "/refunds", params={"idempotency_key": idempotency_key})
        found = _json(response).get("data", [])
        return _refund_result(found[0]) if found else None

    async def _request(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        response = await reach(self._client.request(method, path, **kwargs), f"the shop ({method} {path})")
        raise_if_transient(response, f"the shop answered {method} {path} with {response.status_code}")
        if response.status_code >= 400 and response.status_code != 404:
            raise PermanentConnectorError(f"the shop refused {method} {path}: {_error_message(response)}")
        return response


def _json(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError as exc:
        raise PermanentConnectorError(
            f"the shop answered {response.status_code} with a body that is not JSON"
        ) from exc
    if not isinstance(body, dict):
        raise PermanentConnectorError("the shop answered with JSON that is not an object")
    return body


def _refund_result(refund: dict[str, Any]) -> dict[str, Any]:
    return {"refund_id": refund["id"], "order_id": refund["order_id"], "amount": refund["amount"]}


def _error_message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error", {})
        return str(error.get("message") if isinstance(error, dict) else error) or response.reason_phrase
    except ValueError:
        return response.reason_phrase
