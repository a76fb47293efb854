"""The shop's payments in Stripe: `shop.refund` refunds the order's PaymentIntent, `get_order` reads it.

An order is the succeeded PaymentIntent whose ``metadata["order_id"]`` is the shop's order number (how shops
commonly link the two). Exactly once, twice over: our idempotency key goes to Stripe as the ``Idempotency-Key``
header (Stripe replays the first response to a retry), and into the refund's metadata, where ``lookup`` finds it
and where ``execute`` looks before it acts — so a retry after Stripe's 24-hour idempotency window, or against a
Stripe stand-in that ignores the header, still refunds once. The key itself (STRIPE_API_KEY) never appears in a
result or an error message.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Mapping
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, ClassVar, NoReturn, TypeVar
from urllib.parse import urlsplit

import stripe

from connectors.actions import Action, ShopRefund
from connectors.base import ConnectorContext
from connectors.errors import ConnectorSettingError, PermanentConnectorError, TransientConnectorError
from connectors.http_errors import retry_after
from connectors.sandbox_shop import OrderInfo

T = TypeVar("T")
_Pages = stripe.ListObject[Any] | stripe.SearchResultObject[Any]

DEFAULT_API_BASE = "https://api.stripe.com"
KEY_METADATA = "aios_idempotency_key"
REASON_METADATA = "aios_reason"
# Refunds that took, or are taking, money back: both count against what is left to refund (as Stripe counts
# them in a charge's amount_refunded); failed and canceled ones returned nothing.
COUNTED_REFUND_STATUSES = frozenset({"succeeded", "pending", "requires_action"})
# Currencies Stripe counts in whole units rather than hundredths (stripe.com/docs/currencies).
ZERO_DECIMAL_CURRENCIES = frozenset(
    {
        "bif",
        "clp",
        "djf",
        "gnf",
        "jpy",
        "kmf",
        "krw",
        "mga",
        "pyg",
        "rwf",
        "ugx",
        "vnd",
        "vuv",
        "xaf",
        "xof",
        "xpf",
    }
)


class StripeShop:
    actions: ClassVar[tuple[type[Action], ...]] = (ShopRefund,)
    settings_names: ClassVar[tuple[str, ...]] = ("STRIPE_API_KEY",)

    @classmethod
    def configured(cls, context: ConnectorContext) -> StripeShop | None:
        settings = context.settings
        key = settings.get("STRIPE_API_KEY")
        if settings.get("SHOPIFY_SHOP") or settings.get("SHOPIFY_ACCESS_TOKEN"):
            # Shopify is the shop of record: its refunds go through its own payment gateway (often Stripe),
            # so refunding the payment in Stripe directly would leave Shopify's order unaware of it.
            return None
        if not key:
            if settings.get("STRIPE_API_BASE"):
                raise ConnectorSettingError(
                    "STRIPE_API_BASE is set but STRIPE_API_KEY is not; set both, or neither"
                )
            return None
        if not key.startswith(("sk_", "rk_")):
            raise ConnectorSettingError(
                "STRIPE_API_KEY must be a secret key (sk_live_…, sk_test_…) or a restricted key (rk_…) with "
                "write access to refunds; publishable keys (pk_…) cannot refund. Find it at "
                "dashboard.stripe.com/apikeys"
            )
        return cls(key, _api_base(settings), timeout=context.http_timeout_seconds)

    def __init__(self, api_key: str, api_base: str = DEFAULT_API_BASE, *, timeout: float = 10.0) -> None:
        self._api_key = api_key
        self._host = urlsplit(api_base).netloc
        self._http = stripe.HTTPXClient(timeout=timeout)
        # No retries inside the SDK: the bot's own retry loop does them, recording every attempt.
        client = stripe.StripeClient(
            api_key, base_addresses={"api": api_base}, http_client=self._http, max_network_retries=0
        )
        self._stripe = client.v1
        self._search_works = True
        # Within this process, one refund at a time: looking for our key, checking what is left and refunding
        # are then one step. Across processes, Stripe's own idempotency covers the same key.
        self._refunding = asyncio.Lock()

    async def close(self) -> None:
        await self._http.close_async()  # type: ignore[no-untyped-call]  # the SDK leaves it unannotated

    async def health(self) -> str:
        balance = await self._call(self._stripe.balance.retrieve_async())
        mode = "live" if balance.livemode else "test"
        return f"Stripe reachable at {self._host}, key accepted ({mode} mode)"

    async def get_order(self, order_id: int) -> OrderInfo | None:
        intent = await self._payment_intent(order_id)
        if intent is None:
            return None
        name, email = await self._customer(intent)
        refunds = await self._refunds(intent["id"])
        currency = str(intent["currency"])
        return OrderInfo(
            id=order_id,
            customer_name=name,
            customer_email=email,
            item=intent.get("description") or intent["metadata"].get("item") or f"order {order_id}",
            total=_from_minor(int(intent["amount"]), currency),
            refunded=_from_minor(_refunded_minor(refunds), currency),
            currency=currency.upper(),
        )

    async def execute(self, action: Action, idempotency_key: str) -> dict[str, Any]:
        assert isinstance(action, ShopRefund)
        async with self._refunding:
            intent = await self._payment_intent(action.order_id)
            if intent is None:
                raise PermanentConnectorError(
                    f"order {action.order_id} has no payment in Stripe (no succeeded PaymentIntent with "
                    f"metadata order_id={action.order_id})"
                )
            refunds = await self._refunds(intent["id"])
            landed = _with_key(refunds, idempotency_key)
            if landed is not None:
                return _refund_result(landed, action.order_id, replayed=True)
            currency = str(intent["currency"])
            if currency != "usd":
                raise PermanentConnectorError(
                    f"order {action.order_id} was paid in {currency.upper()}; refunds are made in USD only"
                )
            cents = _to_cents(action.amount)
            left = int(intent["amount"]) - _refunded_minor(refunds)
            if cents > left:
                raise PermanentConnectorError(
                    f"order {action.order_id} has ${left / 100:,.2f} left to refund in Stripe; "
                    f"${action.amount:,.2f} is too much"
                )
            refund = await self._call(
                self._stripe.refunds.create_async(
                    {
                        "payment_intent": intent["id"],
                        "amount": cents,
                        # Our reasons are free words, not Stripe's reason codes: they go in the metadata.
                        "metadata": {KEY_METADATA: idempotency_key, REASON_METADATA: action.reason[:500]},
                    },
                    {"idempotency_key": idempotency_key},
                )
            )
        response = refund.last_response
        replayed = response is not None and response.headers.get("Idempotent-Replayed") == "true"
        return _refund_result(refund.to_dict(), action.order_id, replayed=replayed)

    async def lookup(self, action: Action, idempotency_key: str) -> dict[str, Any] | None:
        assert isinstance(action, ShopRefund)
        intent = await self._payment_intent(action.order_id)
        if intent is None:
            return None
        landed = _with_key(await self._refunds(intent["id"]), idempotency_key)
        return _refund_result(landed, action.order_id, replayed=True) if landed is not None else None

    async def _payment_intent(self, order_id: int) -> dict[str, Any] | None:
        """The order's succeeded PaymentIntent, found by its metadata."""
        found = [
            intent
            for intent in await self._intents_for(order_id)
            if intent.get("metadata", {}).get("order_id") == str(order_id)
            and intent.get("status") == "succeeded"
        ]
        if len(found) > 1:
            raise PermanentConnectorError(
                f"order {order_id} has {len(found)} succeeded payments in Stripe; refund it in the Stripe dashboard"
            )
        return found[0] if found else None

    async def _intents_for(self, order_id: int) -> list[dict[str, Any]]:
        if self._search_works:
            query = f"metadata['order_id']:'{order_id}'"
            try:
                return await self._all(
                    self._stripe.payment_intents.search_async({"query": query, "limit": 100})
                )
            except _NotFound:
                # A Stripe stand-in without the search API (Stripe itself has it): list and filter instead.
                self._search_works = False
        return await self._all(self._stripe.payment_intents.list_async({"limit": 100}))

    async def _refunds(self, payment_intent: str) -> list[dict[str, Any]]:
        return await self._all(
            self._stripe.refunds.list_async({"payment_intent": payment_intent, "limit": 100})
        )

    async def _all(self, first_page: Awaitable[_Pages]) -> list[dict[str, Any]]:
        """Every item of a list or search, page after page."""
        try:
            page = await first_page
            return [item.to_dict() async for item in page.auto_paging_iter()]
        except stripe.StripeError as exc:
            _raise_classified(exc, self._api_key)

    async def _customer(self, intent: Mapping[str, Any]) -> tuple[str, str]:
        """The customer's name and email: the Stripe customer's, else the payment's receipt email."""
        customer = intent.get("customer")
        receipt_email = str(intent.get("receipt_email") or "")
        if isinstance(customer, str):
            found = (await self._call(self._stripe.customers.retrieve_async(customer))).to_dict()
            email = str(found.get("email") or receipt_email)
            return str(found.get("name") or email or "customer"), email
        return receipt_email or "customer", receipt_email

    async def _call(self, request: Awaitable[T]) -> T:
        try:
            return await request
        except stripe.StripeError as exc:
            _raise_classified(exc, self._api_key)


def _api_base(settings: Mapping[str, str]) -> str:
    base = settings.get("STRIPE_API_BASE", DEFAULT_API_BASE).rstrip("/")
    parts = urlsplit(base)
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path or parts.username:
        raise ConnectorSettingError(
            "STRIPE_API_BASE must be the API's scheme and host, such as https://api.stripe.com or "
            "http://localhost:8420, without a path or credentials"
        )
    return base


def _raise_classified(exc: stripe.StripeError, api_key: str) -> NoReturn:
    """Stripe's error as ours: transient when a retry can help, permanent (with Stripe's message) when not."""
    message = _stripe_message(exc, api_key)
    status = exc.http_status
    if isinstance(exc, stripe.AuthenticationError | stripe.PermissionError):
        raise PermanentConnectorError(f"Stripe refused STRIPE_API_KEY ({message}); set a valid key") from None
    if isinstance(exc, stripe.RateLimitError):
        raise TransientConnectorError(f"Stripe is rate limiting: {message}", retry_after(exc.headers)) from None
    if status == 409:
        # Another request with the same key (or on the same object) is in flight; once it finishes, a retry
        # gets its refund. The SDK reports this as a plain APIError, so the status decides.
        raise TransientConnectorError(f"Stripe is still handling this refund: {message}") from None
    if isinstance(exc, stripe.APIConnectionError):
        raise TransientConnectorError(f"Stripe could not be reached: {message}") from None
    if status is None or status >= 500:
        raise TransientConnectorError(f"Stripe answered {status or 'with an error'}: {message}") from None
    if status == 404:
        raise _NotFound(f"Stripe has no such thing: {message}") from None
    raise PermanentConnectorError(f"Stripe refused the request: {message}") from None


class _NotFound(PermanentConnectorError):
    """Stripe answered 404."""


def _stripe_message(exc: stripe.StripeError, api_key: str) -> str:
    error = exc.error
    code = error.code if error is not None else None
    text = (error.message if error is not None else None) or exc.user_message or type(exc).__name__
    # Stripe's messages name a key only masked, but a stand-in or proxy may echo it whole.
    text = text.replace(api_key, "[STRIPE_API_KEY]")
    return f"{text} ({code})" if code else text



def _to_cents(amount: float) -> int:
    """Exact: 19.99 is 1999 cents, never 1998 from binary floating point."""
    return int((Decimal(str(amount)) * 100).to_integral_value(ROUND_HALF_UP))


def _from_minor(amount: int, currency: str) -> float:
    return float(amount) if currency.lower() in ZERO_DECIMAL_CURRENCIES else amount / 100


def _refunded_minor(refunds: list[dict[str, Any]]) -> int:
    return sum(int(r["amount"]) for r in refunds if r.get("status") in COUNTED_REFUND_STATUSES)


def _with_key(refunds: list[dict[str, Any]], key: str) -> dict[str, Any] | None:
    return next((r for r in refunds if (r.get("metadata") or {}).get(KEY_METADATA) == key), None)


def _refund_result(refund: Mapping[str, Any], order_id: int, *, replayed: bool) -> dict[str, Any]:
    return {
        "refund_id": refund["id"],
        "order_id": order_id,
        "amount": int(refund["amount"]) / 100,
        "currency": str(refund.get("currency", "usd")).upper(),
        "status": refund.get("status"),
        "replayed": replayed,
    }
