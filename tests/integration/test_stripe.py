"""The Stripe shop: its settings, how it reads Stripe's answers (respx, in Stripe's documented shapes, for what
localstripe does not do: idempotent replay, refusals, rate limits, outages), its health check, and the whole bot
refunding through a real localstripe process."""

from __future__ import annotations

import asyncio
import json
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from sqlmodel import select

from bot.bootstrap import Aios
from bot.queries import why
from connectors.actions import ShopRefund
from connectors.base import ConnectorContext
from connectors.errors import ConnectorSettingError, PermanentConnectorError, TransientConnectorError
from connectors.http_shop import HttpShop
from connectors.sandbox_shop import SandboxShop
from connectors.stripe_shop import DEFAULT_API_BASE, StripeShop
from runtime.messages import DecideApproval, Recover
from storage.engine import create_engine
from storage.records import ActionStatus, Execution
from storage.unit_of_work import UnitOfWorkFactory
from tests.conftest import Clock
from tests.fakes.aios_process import AIOS, aios_env
from tests.fakes.localstripe_server import API_KEY, LocalStripe
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import CHANNEL, MANAGER, OTHER_MANAGER, action_records, ask, start_aios
from tests.integration.test_gated_refund import only_approval

SECRET_KEY = "sk_live_51AiosSecretDoNotLeak0123456789"
INTENT = {
    "id": "pi_1001",
    "object": "payment_intent",
    "amount": 32000,
    "currency": "usd",
    "status": "succeeded",
    "customer": "cus_1",
    "description": "Ceramic pour-over set",
    "receipt_email": None,
    "latest_charge": "ch_1",
    "metadata": {"order_id": "1001"},
}
REFUND = {
    "id": "re_1",
    "object": "refund",
    "amount": 25000,
    "currency": "usd",
    "payment_intent": "pi_1001",
    "charge": "ch_1",
    "status": "succeeded",
    "metadata": {},
}


def context(**settings: str) -> ConnectorContext:
    # Building a connector touches no store; the context only has to be a real one.
    units = UnitOfWorkFactory.for_engine(create_engine("sqlite+aiosqlite:///:memory:"))
    return ConnectorContext(
        units_of_work=units, shop_api_url=settings.pop("shop_api_url", None), settings=settings
    )


def refund(amount: float = 250.0) -> ShopRefund:
    return ShopRefund(order_id=1001, amount=amount, reason="arrived broken")


def listing(url: str, data: list[dict[str, Any]], kind: str = "list") -> dict[str, Any]:
    return {"object": kind, "data": data, "has_more": False, "url": url, "next_page": None}


def stripe_error(status: int, type_: str, message: str, code: str | None = None) -> httpx.Response:
    return httpx.Response(status, json={"error": {"type": type_, "message": message, "code": code}})


@pytest.fixture
def stripe_api() -> Iterator[respx.MockRouter]:
    """Stripe's API, answering in its documented shapes: order 1001 is pi_1001, nothing refunded yet."""
    with respx.mock(base_url=DEFAULT_API_BASE, assert_all_called=False) as api:
        api.get("/v1/payment_intents/search").respond(
            json=listing("/v1/payment_intents/search", [INTENT], "search_result")
        )
        api.get("/v1/customers/cus_1").respond(
            json={"id": "cus_1", "object": "customer", "name": "Maya Patel", "email": "maya@example.com"}
        )
        api.get("/v1/refunds").respond(json=listing("/v1/refunds", []))
        yield api


@pytest.fixture
async def shop() -> AsyncIterator[StripeShop]:
    connector = StripeShop(SECRET_KEY)
    yield connector
    await connector.close()


# --- settings ----------------------------------------------------------------------------------------------


def test_without_a_key_the_sandbox_serves_and_with_one_stripe_replaces_it_and_the_shop_api() -> None:
    assert StripeShop.configured(context()) is None
    assert isinstance(SandboxShop.configured(context()), SandboxShop)
    with_stripe = context(STRIPE_API_KEY=SECRET_KEY, shop_api_url="https://shop.example.com")
    assert isinstance(StripeShop.configured(with_stripe), StripeShop)
    assert SandboxShop.configured(with_stripe) is None
    assert HttpShop.configured(with_stripe) is None


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        ({"STRIPE_API_KEY": "pk_live_51AiosSecretDoNotLeak"}, "STRIPE_API_KEY must be a secret key"),
        ({"STRIPE_API_KEY": SECRET_KEY, "STRIPE_API_BASE": "api.stripe.com"}, "STRIPE_API_BASE must be"),
        (
            {"STRIPE_API_KEY": SECRET_KEY, "STRIPE_API_BASE": "https://u:p@x.example/v1"},
            "STRIPE_API_BASE must",
        ),
        ({"STRIPE_API_BASE": "http://localhost:8420"}, "STRIPE_API_KEY is not"),
    ],
    ids=["publishable-key", "no-scheme", "path-and-credentials", "base-without-key"],
)
def test_a_malformed_setting_is_named_without_its_value(settings: dict[str, str], says: str) -> None:
    with pytest.raises(ConnectorSettingError, match=says) as raised:
        StripeShop.configured(context(**settings))
    assert "AiosSecret" not in str(raised.value) and "u:p@" not in str(raised.value)


# --- Stripe's answers (respx) --------------------------------------------------------------------------------


async def test_the_key_goes_as_idempotency_key_and_in_the_metadata_with_the_amount_in_exact_cents(
    stripe_api: respx.MockRouter, shop: StripeShop
) -> None:
    create = stripe_api.post("/v1/refunds").respond(json={**REFUND, "amount": 1999})
    result = await shop.execute(refund(19.99), "key-1")

    assert result == {
        "refund_id": "re_1",
        "order_id": 1001,
        "amount": 19.99,
        "currency": "USD",
        "status": "succeeded",
        "replayed": False,
    }
    sent = create.calls.last.request
    assert sent.headers["Idempotency-Key"] == "key-1"
    form = dict(httpx.QueryParams(sent.content.decode()))
    assert form == {
        "payment_intent": "pi_1001",
        "amount": "1999",
        "metadata[aios_idempotency_key]": "key-1",
        "metadata[aios_reason]": "arrived broken",
    }
    assert "metadata['order_id']:'1001'" in stripe_api.calls[0].request.url.params["query"]


async def test_a_retry_stripe_replays_returns_the_first_refund(
    stripe_api: respx.MockRouter, shop: StripeShop
) -> None:
    stripe_api.post("/v1/refunds").respond(json=REFUND, headers={"Idempotent-Replayed": "true"})
    result = await shop.execute(refund(), "key-1")
    assert (result["refund_id"], result["amount"], result["replayed"]) == ("re_1", 250.0, True)


async def test_a_refund_found_by_its_key_is_returned_without_asking_stripe_to_refund(
    stripe_api: respx.MockRouter, shop: StripeShop
) -> None:
    landed = {**REFUND, "metadata": {"aios_idempotency_key": "key-1"}}
    stripe_api.get("/v1/refunds").respond(json=listing("/v1/refunds", [landed]))
    create = stripe_api.post("/v1/refunds")

    assert (await shop.execute(refund(), "key-1"))["refund_id"] == "re_1"
    assert (await shop.lookup(refund(), "key-1") or {})["refund_id"] == "re_1"
    assert await shop.lookup(refund(), "key-2") is None
    assert not create.called


@pytest.mark.parametrize(
    ("answer", "error", "says"),
    [
        (
            stripe_error(
                400,
                "invalid_request_error",
                "Charge ch_1 has already been refunded.",
                "charge_already_refunded",
            ),
            PermanentConnectorError,
            "Charge ch_1 has already been refunded. (charge_already_refunded)",
        ),
        (
            stripe_error(
                400,
                "invalid_request_error",
                "Refund amount ($250.00) is greater than unrefunded amount on charge ($200.00)",
                "amount_too_large",
            ),
            PermanentConnectorError,
            "greater than unrefunded amount",
        ),
        (
            stripe_error(
                409,
                "idempotency_error",
                "There is currently another in-progress request using this Idempotent Key.",
                "idempotency_key_in_use",
            ),
            TransientConnectorError,
            "still handling this refund",
        ),
        (
            stripe_error(400, "idempotency_error", "Keys for idempotent requests can only be used once."),
            PermanentConnectorError,
            "can only be used once",
        ),
        (stripe_error(500, "api_error", "An unknown error occurred"), TransientConnectorError, "500"),
        (httpx.Response(502, text="<html>Bad gateway</html>"), TransientConnectorError, "502"),
        (httpx.ConnectError("connection refused"), TransientConnectorError, "could not be reached"),
        (httpx.ReadTimeout("timed out"), TransientConnectorError, "could not be reached"),
    ],
    ids=[
        "already-refunded",
        "amount-too-large",
        "key-in-use",
        "key-reused",
        "server-error",
        "bad-gateway",
        "refused",
        "timeout",
    ],
)
async def test_stripe_errors_are_transient_or_permanent_with_stripes_message(
    stripe_api: respx.MockRouter,
    shop: StripeShop,
    answer: httpx.Response | Exception,
    error: type[Exception],
    says: str,
) -> None:
    route = stripe_api.post("/v1/refunds")
    if isinstance(answer, Exception):
        route.side_effect = answer
    else:
        route.return_value = answer
    with pytest.raises(error, match=says.replace("(", r"\(").replace(")", r"\)").replace("$", r"\$")):
        await shop.execute(refund(), "key-1")


async def test_a_rate_limit_is_transient_and_carries_retry_after(
    stripe_api: respx.MockRouter, shop: StripeShop
) -> None:
    answer = stripe_error(
        429, "invalid_request_error", "Too many requests hit the API too quickly.", "rate_limit"
    )
    answer.headers["Retry-After"] = "7"
    stripe_api.post("/v1/refunds").return_value = answer
    with pytest.raises(TransientConnectorError, match="rate limiting") as raised:
        await shop.execute(refund(), "key-1")
    assert raised.value.retry_after == 7.0


async def test_a_refused_key_names_the_setting_and_never_the_key(
    stripe_api: respx.MockRouter, shop: StripeShop
) -> None:
    # Stripe masks the key in its message; a proxy or stand-in might not.
    stripe_api.get("/v1/balance").return_value = stripe_error(
        401, "invalid_request_error", f"Invalid API Key provided: {SECRET_KEY}"
    )
    with pytest.raises(PermanentConnectorError, match="STRIPE_API_KEY") as raised:
        await shop.health()
    assert SECRET_KEY not in str(raised.value)


async def test_an_order_is_read_by_searching_its_metadata_and_counts_only_refunds_that_return_money(
    stripe_api: respx.MockRouter, shop: StripeShop
) -> None:
    refunds = [
        {**REFUND, "id": "re_a", "amount": 5000, "status": "succeeded"},
        {**REFUND, "id": "re_b", "amount": 1000, "status": "pending"},
        {**REFUND, "id": "re_c", "amount": 2000, "status": "failed"},
    ]
    stripe_api.get("/v1/refunds").respond(json=listing("/v1/refunds", refunds))
    order = await shop.get_order(1001)
    assert order is not None
    assert (order.customer_name, order.customer_email, order.item) == (
        "Maya Patel",
        "maya@example.com",
        "Ceramic pour-over set",
    )
    assert (order.total, order.refunded, order.refundable) == (320.0, 60.0, 260.0)

    with pytest.raises(PermanentConnectorError, match=r"\$260.00 left"):
        await shop.execute(refund(260.01), "key-1")


async def test_an_order_paid_twice_is_not_guessed_at(stripe_api: respx.MockRouter, shop: StripeShop) -> None:
    twice = [INTENT, {**INTENT, "id": "pi_again"}]
    stripe_api.get("/v1/payment_intents/search").respond(
        json=listing("/v1/payment_intents/search", twice, "search_result")
    )
    with pytest.raises(PermanentConnectorError, match="2 succeeded payments"):
        await shop.get_order(1001)


# --- against localstripe ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def localstripe_process() -> Iterator[LocalStripe]:
    with LocalStripe() as server:
        yield server


@pytest.fixture
async def localstripe(localstripe_process: LocalStripe) -> LocalStripe:
    localstripe_process.reset()
    return localstripe_process


async def test_health_says_stripe_answers_and_the_key_is_accepted(localstripe: LocalStripe) -> None:
    shop = StripeShop(API_KEY, localstripe.url)
    try:
        assert (
            await shop.health()
            == f"Stripe reachable at 127.0.0.1:{localstripe.port}, key accepted (test mode)"
        )
    finally:
        await shop.close()


@pytest.fixture
async def stripe_aios(
    localstripe: LocalStripe, database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> AsyncIterator[tuple[Aios, dict[int, str]]]:
    """The bot with Stripe configured by its environment settings, the shop's orders in localstripe."""
    intents = await localstripe.seed()
    instance = await start_aios(
        database_url, slack_api, clock, tmp_path, STRIPE_API_KEY=API_KEY, STRIPE_API_BASE=localstripe.url
    )
    yield instance, intents
    await instance.close()


async def test_an_approved_refund_is_made_once_in_stripe_and_explained(
    stripe_aios: tuple[Aios, dict[int, str]], localstripe: LocalStripe, slack_api: FakeSlackApi
) -> None:
    aios, intents = stripe_aios
    assert isinstance(aios.registry.connector_for("shop.refund"), StripeShop)
    await ask(aios, "refund order 1001 $250 arrived broken")
    approval = await only_approval(aios)
    assert approval.id is not None and await localstripe.refunds(intents[1001]) == []

    clicks = [
        DecideApproval(approval.id, m, approve=True, channel=CHANNEL) for m in [MANAGER, OTHER_MANAGER] * 3
    ]
    await asyncio.gather(*(aios.process(click) for click in clicks))

    [made] = await localstripe.refunds(intents[1001])
    assert (made["amount"], made["metadata"]["aios_reason"]) == (25000, "arrived broken")
    async with aios.units() as uow:
        execution = (await uow.session.exec(select(Execution))).one()
    assert execution.status == "succeeded" and execution.result["refund_id"] == made["id"]
    assert made["metadata"]["aios_idempotency_key"] == execution.idempotency_key
    explanation = await why(aios.units, f"AP-{approval.id}")
    assert MANAGER in explanation and "refunds-over-100-need-a-manager" in explanation
    assert made["id"] in await why(aios.units, f"E-{execution.id}")

    # A process that died after Stripe refunded and before recording it: recovery asks Stripe, refunds nothing.
    async with aios.units() as uow:
        execution.status, execution.owner = "started", None
        uow.session.add(execution)
        await uow.runs.set_action_status(execution.action_id, ActionStatus.APPROVED)
        await uow.commit()
    await aios.process(Recover(grace_seconds=0))
    await aios.background.drain()

    assert [r["id"] for r in await localstripe.refunds(intents[1001])] == [made["id"]]
    async with aios.units() as uow:
        settled = (await uow.session.exec(select(Execution))).one()
    assert settled.status == "succeeded" and settled.result["refund_id"] == made["id"]


async def test_a_refund_stripe_refuses_fails_once_and_no_record_or_message_holds_the_key(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await start_aios(database_url, slack_api, clock, tmp_path, STRIPE_API_KEY=SECRET_KEY)
    try:
        with respx.mock(base_url=DEFAULT_API_BASE, assert_all_called=False) as api:
            api.get("/v1/payment_intents/search").respond(
                json=listing("/v1/payment_intents/search", [{**INTENT, "amount": 12900}], "search_result")
            )
            api.get("/v1/customers/cus_1").respond(
                json={"id": "cus_1", "object": "customer", "name": "Ana Lima", "email": "ana@example.com"}
            )
            api.get("/v1/refunds").respond(json=listing("/v1/refunds", []))
            create = api.post("/v1/refunds")
            create.return_value = stripe_error(
                401, "invalid_request_error", f"Invalid API Key provided: {SECRET_KEY}"
            )
            await ask(aios, "refund $40 on order 1001, strap tore")  # small: the policy lets it through
        records = await action_records(aios)
    finally:
        await aios.close()

    assert create.call_count == 1
    [execution] = [r for r in records if isinstance(r, Execution)]
    assert execution.status == "failed" and "STRIPE_API_KEY" in (execution.error or "")
    stored = json.dumps([r.model_dump(mode="json") for r in records])
    said = json.dumps([call.params for call in slack_api.calls])
    assert SECRET_KEY not in stored and SECRET_KEY not in said
    assert "STRIPE_API_KEY" in said


# --- the command line ---------------------------------------------------------------------------------------


def test_aios_connectors_checks_stripe_and_says_the_sandbox_is_replaced(
    localstripe_process: LocalStripe, tmp_path: Path
) -> None:
    env = {
        **aios_env(f"sqlite+aiosqlite:///{tmp_path}/c.db", "http://127.0.0.1:9/api/"),
        "STRIPE_API_KEY": API_KEY,
        "STRIPE_API_BASE": localstripe_process.url,
        "COLUMNS": "200",
    }
    result = subprocess.run([AIOS, "connectors"], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") > 3}
    assert "key accepted (test mode)" in rows["stripe"] and "shop.refund" in rows["stripe"]
    assert "replaced by a real connector" in rows["shop"]
    assert API_KEY not in result.stdout


def test_a_malformed_stripe_key_stops_the_bot_with_one_line_that_does_not_repeat_it(tmp_path: Path) -> None:
    env = {
        **aios_env(f"sqlite+aiosqlite:///{tmp_path}/c.db", "http://127.0.0.1:9/api/"),
        "STRIPE_API_KEY": "pk_live_51AiosSecretDoNotLeak",
    }
    result = subprocess.run(
        [AIOS, "chat"], env=env, input="quit\n", capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: STRIPE_API_KEY must be a secret key") and "AiosSecret" not in line
