"""The shop's payments in Stripe: `shop.refund` refunds the order's PaymentIntent, `get_order` reads it;
`stripe.refund` refunds one payment named by its PaymentIntent or charge, `find_payments` finds payments by id,
customer or email.

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
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, ClassVar, NoReturn, TypeVar
from urllib.parse import urlsplit

import stripe

from connectors.actions import Action, ShopRefund, StripeRefund
from connectors.base import ConnectorContext
from connectors.errors import ConnectorSettingError, PermanentConnectorError, TransientConnectorError
from connectors.http_errors import retry_after
from connectors.sandbox_shop import OrderInfo
from connectors.stripe_payments import CUSTOMER_ID, MAX_LISTED, PAYMENT_ID, PaymentInfo
from storage.unit_of_work import awaiting_remote

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
    actions: ClassVar[tuple[type[Action], ...]] = (ShopRefund, StripeRefund)
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
        refunds = await self._refunds({"payment_intent": intent["id"]})
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

    async def find_payments(self, query: str) -> list[PaymentInfo]:
        """Payments named by ``query``: a PaymentIntent or charge id (that payment), a customer id or a customer's
        email (their newest payments, at most MAX_LISTED), newest first; failed attempts are left out."""
        if PAYMENT_ID.fullmatch(query):
            payment = await self._payment(query)
            if payment is None:
                return []
            # A PaymentIntent that never charged is listed as it is: nothing paid, nothing refunded.
            return [await self._info(payment.charge or payment.source, also=payment.source)]
        if CUSTOMER_ID.fullmatch(query):
            charges = await self._charges_of(query)
        else:
            charges = await self._charges_by_email(query)
        found = {c["id"]: c for c in charges if c.get("status") != "failed"}
        newest = sorted(found.values(), key=lambda c: int(c.get("created") or 0), reverse=True)
        return [await self._info(charge) for charge in newest[:MAX_LISTED]]

    async def refusal(self, action: Action) -> str | None:
        """Why Stripe is certain to refuse this refund of a payment (asked before approval); None if it may run."""
        if not isinstance(action, StripeRefund):
            return None
        payment = await self._payment(action.payment)
        if payment is None:
            return f"there is no payment {action.payment} in Stripe"
        return _problem(action, payment, _refunded_minor(await self._refunds_of(payment)))

    async def execute(self, action: Action, idempotency_key: str) -> dict[str, Any]:
        if isinstance(action, StripeRefund):
            return await self._refund_payment(action, idempotency_key)
        assert isinstance(action, ShopRefund)
        async with self._refunding:
            intent = await self._payment_intent(action.order_id)
            if intent is None:
                raise PermanentConnectorError(
                    f"order {action.order_id} has no payment in Stripe (no succeeded PaymentIntent with "
                    f"metadata order_id={action.order_id})"
                )
            refunds = await self._refunds({"payment_intent": intent["id"]})
            landed = _with_key(refunds, idempotency_key)
            if landed is not None:
                return _refund_result(landed, order_id=action.order_id, replayed=True)
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
            refund = await self._create_refund(
                {"payment_intent": intent["id"]}, cents, action.reason, None, idempotency_key
            )
        return _refund_result(refund, order_id=action.order_id, replayed=_replayed(refund))

    async def lookup(self, action: Action, idempotency_key: str) -> dict[str, Any] | None:
        if isinstance(action, StripeRefund):
            payment = await self._payment(action.payment)
            if payment is None:
                return None
            landed = _with_key(await self._refunds_of(payment), idempotency_key)
            return _refund_result(landed, payment=action.payment, replayed=True) if landed else None
        assert isinstance(action, ShopRefund)
        intent = await self._payment_intent(action.order_id)
        if intent is None:
            return None
        landed = _with_key(await self._refunds({"payment_intent": intent["id"]}), idempotency_key)
        return _refund_result(landed, order_id=action.order_id, replayed=True) if landed else None

    async def _refund_payment(self, action: StripeRefund, idempotency_key: str) -> dict[str, Any]:
        async with self._refunding:
            payment = await self._payment(action.payment)
            if payment is None:
                raise PermanentConnectorError(f"there is no payment {action.payment} in Stripe")
            refunds = await self._refunds_of(payment)
            landed = _with_key(refunds, idempotency_key)
            if landed is not None:
                return _refund_result(landed, payment=action.payment, replayed=True)
            if problem := _problem(action, payment, _refunded_minor(refunds)):
                raise PermanentConnectorError(problem)
            refund = await self._create_refund(
                payment.target,
                _to_cents(action.amount),
                action.reason,
                action.stripe_reason,
                idempotency_key,
            )
        return _refund_result(refund, payment=action.payment, replayed=_replayed(refund))

    async def _create_refund(
        self,
        target: Mapping[str, str],
        cents: int,
        reason: str,
        stripe_reason: str | None,
        idempotency_key: str,
    ) -> stripe.Refund:
        params: dict[str, Any] = {
            **target,
            "amount": cents,
            # Our reasons are free words, not Stripe's reason codes: they go in the metadata.
            "metadata": {KEY_METADATA: idempotency_key, REASON_METADATA: reason[:500]},
        }
        if stripe_reason is not None:
            params["reason"] = stripe_reason
        return await self._call(
            self._stripe.refunds.create_async(params, {"idempotency_key": idempotency_key})  # type: ignore[arg-type]
        )

    async def _payment(self, payment_id: str) -> _Payment | None:
        """The payment a refund names: its PaymentIntent (refunded as a whole) or its charge; None if Stripe
        has no such thing."""
        try:
            if payment_id.startswith("pi_"):
                intent = (await self._call(self._stripe.payment_intents.retrieve_async(payment_id))).to_dict()
                charge = intent.get("latest_charge")
                if isinstance(charge, str):
                    charge = (await self._call(self._stripe.charges.retrieve_async(charge))).to_dict()
                return _Payment(
                    payment_id,
                    {"payment_intent": payment_id},
                    str(intent.get("status")),
                    int(intent.get("amount_received") or intent["amount"]),
                    str(intent["currency"]),
                    intent,
                    charge if isinstance(charge, dict) else None,
                )
            charge = (await self._call(self._stripe.charges.retrieve_async(payment_id))).to_dict()
        except _NotFound:
            return None
        amount = int(charge.get("amount_captured") or charge["amount"])
        return _Payment(
            payment_id,
            {"charge": payment_id},
            _status(charge),
            amount,
            str(charge["currency"]),
            charge,
            charge,
        )

    async def _charges_of(self, customer: str) -> list[dict[str, Any]]:
        try:
            page = await self._call(self._stripe.charges.list_async({"customer": customer, "limit": 100}))
        except _NotFound:
            return []
        return [charge.to_dict() for charge in page.data]

    async def _charges_by_email(self, email: str) -> list[dict[str, Any]]:
        """The charges of the customers with this email, and among the newest 100 charges those whose receipt
        or billing email it is (a guest checkout has no customer; Stripe cannot search by receipt email)."""
        customers = await self._call(self._stripe.customers.list_async({"email": email, "limit": 100}))
        charges = [c for customer in customers.data for c in await self._charges_of(customer.id)]
        newest = await self._call(self._stripe.charges.list_async({"limit": 100}))
        wanted = email.casefold()
        for charge in (c.to_dict() for c in newest.data):
            emails = (charge.get("receipt_email"), (charge.get("billing_details") or {}).get("email"))
            if any(isinstance(e, str) and e.casefold() == wanted for e in emails):
                charges.append(charge)
        return charges

    async def _info(self, source: Mapping[str, Any], also: Mapping[str, Any] | None = None) -> PaymentInfo:
        """A charge (or a PaymentIntent that never charged) as the agent sees it; ``also``, its PaymentIntent,
        describes it when the charge does not."""
        currency = str(source["currency"])
        intent = source.get("payment_intent")
        _, email = await self._customer(source)
        descriptions = (
            text
            for found in (source, also or {})
            for text in (found.get("description"), (found.get("metadata") or {}).get("item"))
            if text
        )
        payment_id = str((intent.get("id") if isinstance(intent, dict) else intent) or source["id"])
        return PaymentInfo(
            id=payment_id,
            amount=_from_minor(int(source.get("amount_captured") or source["amount"]), currency),
            refunded=_from_minor(int(source.get("amount_refunded") or 0), currency),
            currency=currency.upper(),
            status=_status(source),
            created=datetime.fromtimestamp(int(source.get("created") or 0), UTC),
            description=str(next(descriptions, "")),
            customer_email=email or str((source.get("billing_details") or {}).get("email") or ""),
            charge=str(source["id"]) if source["id"] != payment_id else "",
        )

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

    async def _refunds_of(self, payment: _Payment) -> list[dict[str, Any]]:
        # A PaymentIntent that never charged has no refunds (and Stripe stand-ins may fail to list them).
        return await self._refunds(payment.target) if payment.charge is not None else []

    async def _refunds(self, target: Mapping[str, str]) -> list[dict[str, Any]]:
        """The refunds of a PaymentIntent or a charge (``target``: which, and its id)."""
        return await self._all(self._stripe.refunds.list_async({**target, "limit": 100}))  # type: ignore[arg-type]

    async def _all(self, first_page: Awaitable[_Pages]) -> list[dict[str, Any]]:
        """Every item of a list or search, page after page."""
        try:
            async with awaiting_remote():
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
            async with awaiting_remote():
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
        raise TransientConnectorError(
            f"Stripe is rate limiting: {message}", retry_after(exc.headers)
        ) from None
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


def _replayed(refund: stripe.Refund) -> bool:
    response = refund.last_response
    return response is not None and response.headers.get("Idempotent-Replayed") == "true"


def _refund_result(
    refund: stripe.Refund | Mapping[str, Any],
    *,
    replayed: bool,
    order_id: int | None = None,
    payment: str | None = None,
) -> dict[str, Any]:
    """What the execution records: the refund, and the order or payment it refunded (never our key)."""
    found = refund.to_dict() if isinstance(refund, stripe.Refund) else refund
    named: dict[str, Any] = {"order_id": order_id} if order_id is not None else {"payment": payment}
    return {
        "refund_id": found["id"],
        **named,
        "amount": int(found["amount"]) / 100,
        "currency": str(found.get("currency", "usd")).upper(),
        "status": found.get("status"),
        "replayed": replayed,
    }


@dataclass(frozen=True)
class _Payment:
    """A payment a refund names, with what decides whether it can be refunded."""

    id: str
    target: dict[str, str]  # {"payment_intent": id} or {"charge": id}: how its refunds are listed and made
    status: str
    amount: int  # what was paid, in the currency's minor unit
    currency: str  # lower case, as Stripe writes it
    source: dict[str, Any]  # the PaymentIntent or charge as Stripe returned it
    charge: dict[str, Any] | None  # the charge that took the money, if any did


def _status(found: Mapping[str, Any]) -> str:
    """A charge's or PaymentIntent's status; a charge only authorised took nothing, so nothing can be refunded."""
    status = str(found.get("status"))
    return "requires_capture" if status == "succeeded" and found.get("captured") is False else status


def _problem(action: StripeRefund, payment: _Payment, refunded: int) -> str | None:
    """Why Stripe would refuse this refund of ``payment`` (``refunded`` already, minor units); None if it may."""
    if payment.status != "succeeded":
        return (
            f"payment {payment.id} has not succeeded in Stripe (it is {payment.status}), so nothing can be "
            "refunded"
        )
    if payment.currency != "usd":
        return f"payment {payment.id} was made in {payment.currency.upper()}; refunds are made in USD only"
    left = payment.amount - refunded
    if left <= 0:
        return (
            f"payment {payment.id} has nothing left to refund (${payment.amount / 100:,.2f} already refunded)"
        )
    if _to_cents(action.amount) > left:
        return (
            f"payment {payment.id} has ${left / 100:,.2f} left to refund in Stripe (${payment.amount / 100:,.2f} "
            f"paid, ${refunded / 100:,.2f} refunded); ${action.amount:,.2f} is too much"
        )
    return None
