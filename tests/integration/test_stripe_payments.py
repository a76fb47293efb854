"""Refunds of Stripe payments named by PaymentIntent or charge (`stripe.refund`), and finding payments: against a
real localstripe process, against Stripe's documented answers (respx) for what localstripe does not do, and the
whole bot refunding a payment asked for in words under the packaged policy."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import respx
from sqlmodel import select

from bot.bootstrap import Aios
from connectors.actions import StripeRefund
from connectors.errors import PermanentConnectorError, TransientConnectorError
from connectors.stripe_shop import DEFAULT_API_BASE, StripeShop
from runtime.intake import IncomingIntent
from runtime.messages import DecideApproval, HandleIntent, Recover
from storage.records import ActionStatus, Approval, Execution, ProposedAction
from tests.conftest import Clock
from tests.fakes.anthropic_api import API_KEY as ANTHROPIC_KEY
from tests.fakes.anthropic_api import FakeAnthropicApi, Reply, ToolUse
from tests.fakes.localstripe_server import API_KEY, LocalStripe
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import CHANNEL, MANAGER, REQUESTER, action_records, start_aios
from tests.integration.test_stripe import SECRET_KEY, listing, stripe_error

PACKAGED_POLICY = (Path(__file__).parents[2] / "policies" / "default_policy.yaml").read_text()


def refund(payment: str, amount: float, **more: Any) -> StripeRefund:
    return StripeRefund(payment=payment, amount=amount, reason="wrong size", **more)


# --- against localstripe ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def localstripe_process() -> Iterator[LocalStripe]:
    with LocalStripe() as server:
        yield server


@pytest.fixture
async def localstripe(localstripe_process: LocalStripe) -> LocalStripe:
    localstripe_process.reset()
    return localstripe_process


async def pay(
    server: LocalStripe,
    cents: int,
    *,
    email: str = "ana@example.com",
    currency: str = "usd",
    description: str = "Blue kettle",
    confirm: bool = True,
) -> dict[str, Any]:
    """A card payment with a receipt email, as a guest checkout makes it: the PaymentIntent, charge inside."""
    async with server.client() as v1:
        intent = await v1.payment_intents.create_async(
            {
                "amount": cents,
                "currency": currency,
                "payment_method": "pm_card_visa",
                "confirm": confirm,
                "receipt_email": email,
                "description": description,
            }
        )
        return dict(intent.to_dict())


@pytest.fixture
async def shops(localstripe: LocalStripe) -> AsyncIterator[list[StripeShop]]:
    """Connector instances on one localstripe: a second one is a restarted process that knows nothing."""
    built = [StripeShop(API_KEY, localstripe.url), StripeShop(API_KEY, localstripe.url)]
    yield built
    for shop in built:
        await shop.close()


async def test_payments_are_found_by_intent_charge_customer_and_email_with_what_is_left(
    localstripe: LocalStripe, shops: list[StripeShop]
) -> None:
    shop = shops[0]
    kettle = await pay(localstripe, 12000)
    mug = await pay(localstripe, 1999, description="Mug", email="ANA@example.com")
    await pay(localstripe, 5000, email="bo@example.com")
    async with localstripe.client() as v1:
        customer = await v1.customers.create_async({"email": "cy@example.com"})
        await v1.payment_intents.create_async(
            {
                "amount": 700,
                "currency": "usd",
                "customer": customer.id,
                "payment_method": "pm_card_visa",
                "confirm": True,
            }
        )
    await shop.execute(refund(kettle["id"], 20.0), "key-1")

    [by_intent] = await shop.find_payments(kettle["id"])
    assert (by_intent.id, by_intent.amount, by_intent.refunded, by_intent.left) == (
        kettle["id"],
        120.0,
        20.0,
        100.0,
    )
    assert (by_intent.currency, by_intent.status, by_intent.description, by_intent.customer_email) == (
        "USD",
        "succeeded",
        "Blue kettle",
        "ana@example.com",
    )
    assert by_intent.created.year >= 2024
    assert by_intent.charge == kettle["latest_charge"]["id"]
    assert await shop.find_payments(kettle["latest_charge"]["id"]) == [by_intent]
    by_email = await shop.find_payments("ana@example.com")
    assert {p.id: p.left for p in by_email} == {kettle["id"]: 100.0, mug["id"]: 19.99}
    [of_customer] = await shop.find_payments(customer.id)
    assert (of_customer.amount, of_customer.customer_email) == (7.0, "cy@example.com")
    assert [p.amount for p in await shop.find_payments("cy@example.com")] == [7.0]
    assert await shop.find_payments("pi_NoSuchPayment") == []
    assert await shop.find_payments("nobody@example.com") == []


async def test_refunds_by_intent_and_by_charge_add_up_and_the_rest_is_refused(
    localstripe: LocalStripe, shops: list[StripeShop]
) -> None:
    shop = shops[0]
    kettle = await pay(localstripe, 12000)
    charge = kettle["latest_charge"]["id"]

    first = await shop.execute(refund(kettle["id"], 19.99), "key-1")
    second = await shop.execute(refund(charge, 30.0), "key-2")
    assert (first["payment"], first["amount"], first["replayed"]) == (kettle["id"], 19.99, False)
    assert (second["payment"], second["amount"]) == (charge, 30.0)
    made = await localstripe.refunds(kettle["id"])
    assert sorted(r["amount"] for r in made) == [1999, 3000]
    assert all(r["metadata"]["aios_reason"] == "wrong size" for r in made)
    assert {r["metadata"]["aios_idempotency_key"] for r in made} == {"key-1", "key-2"}
    assert all("key-" not in str(v) for v in (*first.values(), *second.values()))

    too_much = refund(kettle["id"], 70.02)
    says = "has $70.01 left to refund in Stripe ($120.00 paid, $49.99 refunded); $70.02 is too much"
    assert await shop.refusal(too_much) == f"payment {kettle['id']} {says}"
    with pytest.raises(PermanentConnectorError, match=r"\$70.01 left"):
        await shop.execute(too_much, "key-3")
    await shop.execute(refund(charge, 70.01), "key-4")
    assert await shop.refusal(refund(kettle["id"], 1.0)) == (
        f"payment {kettle['id']} has nothing left to refund ($120.00 already refunded)"
    )
    assert len(await localstripe.refunds(kettle["id"])) == 3


async def test_after_a_crash_between_stripe_refunding_and_our_record_no_second_refund_is_made(
    localstripe: LocalStripe, shops: list[StripeShop]
) -> None:
    kettle = await pay(localstripe, 12000)
    asked = refund(kettle["id"], 40.0)
    made = await shops[0].execute(asked, "key-1")  # landed; the process died before recording it

    restarted = shops[1]
    found = await restarted.lookup(asked, "key-1")
    assert found is not None and found["refund_id"] == made["refund_id"]
    assert await restarted.lookup(asked, "key-2") is None
    again = await restarted.execute(asked, "key-1")
    assert (again["refund_id"], again["replayed"]) == (made["refund_id"], True)
    # localstripe ignores Idempotency-Key: only our look-before-acting kept this at one refund.
    assert len(await localstripe.refunds(kettle["id"])) == 1


async def test_payments_that_cannot_be_refunded_are_refused_before_approval(
    localstripe: LocalStripe, shops: list[StripeShop]
) -> None:
    shop = shops[0]
    euros = await pay(localstripe, 5000, currency="eur")
    unpaid = await pay(localstripe, 5000, confirm=False)
    assert await shop.refusal(refund(euros["id"], 10.0)) == (
        f"payment {euros['id']} was made in EUR; refunds are made in USD only"
    )
    assert await shop.refusal(refund(unpaid["id"], 10.0)) == (
        f"payment {unpaid['id']} has not succeeded in Stripe (it is {unpaid['status']}), so nothing can be refunded"
    )
    assert (
        await shop.refusal(refund("pi_NoSuchPayment", 10.0))
        == "there is no payment pi_NoSuchPayment in Stripe"
    )
    assert (
        await shop.refusal(refund("ch_NoSuchCharge", 10.0)) == "there is no payment ch_NoSuchCharge in Stripe"
    )
    with pytest.raises(PermanentConnectorError, match="USD only"):
        await shop.execute(refund(euros["id"], 10.0), "key-1")
    assert await localstripe.refunds(euros["id"]) == []


# --- Stripe's answers (respx) --------------------------------------------------------------------------------

INTENT = {
    "id": "pi_3Kettle",
    "object": "payment_intent",
    "amount": 12000,
    "amount_received": 12000,
    "currency": "usd",
    "status": "succeeded",
    "customer": None,
    "latest_charge": "ch_3Kettle",
    "metadata": {},
}
CHARGE = {
    "id": "ch_3Kettle",
    "object": "charge",
    "amount": 12000,
    "amount_captured": 12000,
    "amount_refunded": 0,
    "captured": True,
    "currency": "usd",
    "status": "succeeded",
    "customer": None,
    "payment_intent": "pi_3Kettle",
    "receipt_email": "ana@example.com",
    "description": "Blue kettle",
    "created": 1795700000,
    "metadata": {},
}
REFUND = {
    "id": "re_1",
    "object": "refund",
    "amount": 1999,
    "currency": "usd",
    "payment_intent": "pi_3Kettle",
    "charge": "ch_3Kettle",
    "status": "succeeded",
    "metadata": {},
}


@pytest.fixture
def stripe_api() -> Iterator[respx.MockRouter]:
    """Stripe's API in its documented shapes: pi_3Kettle paid $120.00 by charge ch_3Kettle, nothing refunded."""
    with respx.mock(base_url=DEFAULT_API_BASE, assert_all_called=False) as api:
        api.get("/v1/payment_intents/pi_3Kettle").respond(json=INTENT)
        api.get("/v1/charges/ch_3Kettle").respond(json=CHARGE)
        api.get("/v1/refunds").respond(json=listing("/v1/refunds", []))
        yield api


@pytest.fixture
async def shop() -> AsyncIterator[StripeShop]:
    connector = StripeShop(SECRET_KEY)
    yield connector
    await connector.close()


@pytest.mark.parametrize(
    ("stripe_reason", "sent_reason"), [(None, None), ("requested_by_customer", "requested_by_customer")]
)
async def test_the_key_goes_as_idempotency_key_and_in_the_metadata_and_stripes_reason_only_when_set(
    stripe_api: respx.MockRouter, shop: StripeShop, stripe_reason: str | None, sent_reason: str | None
) -> None:
    create = stripe_api.post("/v1/refunds").respond(json=REFUND)
    result = await shop.execute(refund("pi_3Kettle", 19.99, stripe_reason=stripe_reason), "key-1")

    assert result == {
        "refund_id": "re_1",
        "payment": "pi_3Kettle",
        "amount": 19.99,
        "currency": "USD",
        "status": "succeeded",
        "replayed": False,
    }
    sent = create.calls.last.request
    assert sent.headers["Idempotency-Key"] == "key-1"
    form = dict(httpx.QueryParams(sent.content.decode()))
    assert form.pop("reason", None) == sent_reason
    assert form == {
        "payment_intent": "pi_3Kettle",
        "amount": "1999",
        "metadata[aios_idempotency_key]": "key-1",
        "metadata[aios_reason]": "wrong size",
    }
    assert dict(stripe_api.calls[-2].request.url.params) == {"payment_intent": "pi_3Kettle", "limit": "100"}


async def test_a_charge_is_refunded_by_its_own_id_and_its_refunds_are_listed_by_charge(
    stripe_api: respx.MockRouter, shop: StripeShop
) -> None:
    listed = stripe_api.get("/v1/refunds").respond(json=listing("/v1/refunds", [{**REFUND, "amount": 10000}]))
    create = stripe_api.post("/v1/refunds").respond(json={**REFUND, "amount": 2000})
    await shop.execute(refund("ch_3Kettle", 20.0), "key-1")
    assert dict(listed.calls.last.request.url.params) == {"charge": "ch_3Kettle", "limit": "100"}
    assert dict(httpx.QueryParams(create.calls.last.request.content.decode()))["charge"] == "ch_3Kettle"
    assert await shop.refusal(refund("ch_3Kettle", 20.01)) == (
        "payment ch_3Kettle has $20.00 left to refund in Stripe ($120.00 paid, $100.00 refunded); $20.01 is too much"
    )


async def test_a_retry_stripe_replays_returns_the_first_refund(
    stripe_api: respx.MockRouter, shop: StripeShop
) -> None:
    stripe_api.post("/v1/refunds").respond(json=REFUND, headers={"Idempotent-Replayed": "true"})
    result = await shop.execute(refund("pi_3Kettle", 19.99), "key-1")
    assert (result["refund_id"], result["replayed"]) == ("re_1", True)


async def test_a_rate_limit_is_transient_with_retry_after(
    stripe_api: respx.MockRouter, shop: StripeShop
) -> None:
    answer = stripe_error(
        429, "invalid_request_error", "Too many requests hit the API too quickly.", "rate_limit"
    )
    answer.headers["Retry-After"] = "3"
    stripe_api.post("/v1/refunds").return_value = answer
    with pytest.raises(TransientConnectorError, match="rate limiting") as raised:
        await shop.execute(refund("pi_3Kettle", 10.0), "key-1")
    assert raised.value.retry_after == 3.0


@pytest.mark.parametrize(
    ("answer", "says"),
    [
        (
            stripe_error(402, "card_error", "Your card has expired.", "expired_card"),
            "Your card has expired. (expired_card)",
        ),
        (
            stripe_error(
                400, "invalid_request_error", "Charge ch_3Kettle has been disputed.", "charge_disputed"
            ),
            "has been disputed. (charge_disputed)",
        ),
        (
            stripe_error(
                400, "invalid_request_error", "Invalid reason: must be one of duplicate, fraudulent"
            ),
            "Invalid reason",
        ),
    ],
    ids=["card-402", "disputed-400", "reason-400"],
)
async def test_card_and_request_errors_fail_for_good_with_stripes_message_and_never_the_key(
    stripe_api: respx.MockRouter, shop: StripeShop, answer: httpx.Response, says: str
) -> None:
    create = stripe_api.post("/v1/refunds")
    create.return_value = answer
    with pytest.raises(PermanentConnectorError) as raised:
        await shop.execute(refund("pi_3Kettle", 10.0, stripe_reason="duplicate"), "key-secret-1")
    assert says in str(raised.value)
    assert "key-secret-1" not in str(raised.value) and SECRET_KEY not in str(raised.value)
    assert create.call_count == 1


async def test_a_payment_stripe_cannot_be_asked_about_just_now_is_transient(
    stripe_api: respx.MockRouter, shop: StripeShop
) -> None:
    stripe_api.get("/v1/payment_intents/pi_3Down").return_value = httpx.Response(503, text="unavailable")
    with pytest.raises(TransientConnectorError, match="503"):
        await shop.refusal(refund("pi_3Down", 10.0))


# --- the whole bot, packaged policy ---------------------------------------------------------------------------


@pytest.fixture
async def stripe_aios(
    localstripe: LocalStripe, database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> AsyncIterator[Aios]:
    instance = await start_aios(
        database_url,
        slack_api,
        clock,
        tmp_path,
        policy=PACKAGED_POLICY,
        STRIPE_API_KEY=API_KEY,
        STRIPE_API_BASE=localstripe.url,
    )
    yield instance
    await instance.close()


async def slash(aios: Aios, text: str) -> None:
    intent_id = await aios.accept(
        IncomingIntent(
            source="slash", team_id="T0FAKE", channel=CHANNEL, thread_ts=None, user=REQUESTER, text=text
        )
    )
    assert intent_id is not None
    await aios.process(HandleIntent(intent_id))


async def approvals(aios: Aios) -> list[Approval]:
    async with aios.units() as uow:
        return list((await uow.session.exec(select(Approval))).all())


async def test_a_250_refund_of_a_payment_waits_for_a_manager_and_is_made_once(
    stripe_aios: Aios, localstripe: LocalStripe
) -> None:
    aios = stripe_aios
    kettle = await pay(localstripe, 30000)
    await slash(aios, f"refund $250 of payment {kettle['id']} wrong size")
    [approval] = await approvals(aios)
    assert approval.id is not None and await localstripe.refunds(kettle["id"]) == []

    # The requester's own click is refused; two managers' clicks at once make one refund.
    await aios.process(DecideApproval(approval.id, REQUESTER, approve=True, channel=CHANNEL))
    assert await localstripe.refunds(kettle["id"]) == []
    clicks = [DecideApproval(approval.id, MANAGER, approve=True, channel=CHANNEL) for _ in range(3)]
    await asyncio.gather(*(aios.process(click) for click in clicks))

    [made] = await localstripe.refunds(kettle["id"])
    assert (made["amount"], made["metadata"]["aios_reason"]) == (25000, "wrong size")
    async with aios.units() as uow:
        execution = (await uow.session.exec(select(Execution))).one()
    assert execution.status == "succeeded" and execution.result["refund_id"] == made["id"]
    assert made["metadata"]["aios_idempotency_key"] == execution.idempotency_key
    assert execution.idempotency_key not in str(execution.result)

    # A process that died after Stripe refunded and before recording it: recovery asks Stripe, refunds nothing.
    async with aios.units() as uow:
        execution.status, execution.owner = "started", None
        uow.session.add(execution)
        await uow.runs.set_action_status(execution.action_id, ActionStatus.APPROVED)
        await uow.commit()
    await aios.process(Recover(grace_seconds=0))
    await aios.background.drain()
    assert [r["id"] for r in await localstripe.refunds(kettle["id"])] == [made["id"]]


async def test_a_30_refund_of_a_payment_found_by_email_goes_straight_through(
    stripe_aios: Aios, localstripe: LocalStripe
) -> None:
    kettle = await pay(localstripe, 12000, email="dee@example.com")
    await slash(stripe_aios, "refund $30 of the payment of dee@example.com, lid cracked")
    assert await approvals(stripe_aios) == []
    [made] = await localstripe.refunds(kettle["id"])
    assert (made["amount"], made["metadata"]["aios_reason"]) == (3000, "lid cracked")


async def test_a_payment_asked_for_by_its_charge_is_found_and_refunded_under_its_payment_intent(
    stripe_aios: Aios, localstripe: LocalStripe
) -> None:
    kettle = await pay(localstripe, 12000)
    charge = kettle["latest_charge"]["id"]
    await slash(stripe_aios, f"refund $30 of payment {charge}, lid cracked")
    [made] = await localstripe.refunds(kettle["id"])
    assert (made["amount"], made["metadata"]["aios_reason"]) == (3000, "lid cracked")
    [action] = [r for r in await action_records(stripe_aios) if isinstance(r, ProposedAction)]
    assert action.params["payment"] == kettle["id"]


async def test_a_refund_split_across_requests_on_one_payment_waits_for_a_manager_once_past_100(
    stripe_aios: Aios, localstripe: LocalStripe
) -> None:
    """$60 and then $60 on one payment: each is small, but together they pass $100 (payment.refunded)."""
    kettle = await pay(localstripe, 30000)
    await slash(stripe_aios, f"refund $60 of payment {kettle['id']} wrong size")
    assert await approvals(stripe_aios) == [] and len(await localstripe.refunds(kettle["id"])) == 1
    await slash(stripe_aios, f"refund $60 of payment {kettle['id']} still wrong")
    [approval] = await approvals(stripe_aios)
    assert approval.approver_roles == ["manager"] and len(await localstripe.refunds(kettle["id"])) == 1
    other = await pay(localstripe, 30000)  # another payment starts from nothing
    await slash(stripe_aios, f"refund $60 of payment {other['id']} wrong size")
    assert len(await approvals(stripe_aios)) == 1 and len(await localstripe.refunds(other["id"])) == 1


async def test_more_than_is_left_is_refused_before_anyone_is_asked_to_approve(
    stripe_aios: Aios, localstripe: LocalStripe, slack_api: FakeSlackApi
) -> None:
    kettle = await pay(localstripe, 12000)
    await slash(stripe_aios, f"refund $150 of payment {kettle['id']} wrong size")
    assert await approvals(stripe_aios) == []
    assert await localstripe.refunds(kettle["id"]) == []
    assert not [r for r in await action_records(stripe_aios) if isinstance(r, Execution)]
    said = " ".join(str(call.params.get("text")) for call in slack_api.calls)
    assert "$120.00 left to refund" in said


async def test_a_payment_stripe_cannot_be_reached_for_is_not_called_missing_and_nothing_is_proposed(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await start_aios(
        database_url,
        slack_api,
        clock,
        tmp_path,
        policy=PACKAGED_POLICY,
        STRIPE_API_KEY=SECRET_KEY,
        STRIPE_API_BASE="http://127.0.0.1:9",  # nothing listens there
    )
    try:
        await slash(aios, "refund $20 of payment pi_3Kettle wrong size")
        assert await approvals(aios) == [] and await action_records(aios) == []
    finally:
        await aios.close()
    said = " ".join(str(call.params.get("text")) for call in slack_api.calls)
    assert "couldn't reach Stripe to look up payment pi_3Kettle" in said and "can't find" not in said
    assert SECRET_KEY not in said


async def test_a_model_naming_a_charge_of_a_payment_intent_is_told_to_name_the_payment_intent(
    localstripe: LocalStripe,
    anthropic_api: FakeAnthropicApi,
    database_url: str,
    slack_api: FakeSlackApi,
    clock: Clock,
    tmp_path: Path,
) -> None:
    """Refunds are counted per payment id by the policy: one payment is refunded under one id."""
    kettle = await pay(localstripe, 30000)
    charge = kettle["latest_charge"]["id"]
    by_charge = {"payment": charge, "amount": 60.0, "reason": "still wrong"}
    anthropic_api.script(
        Reply("Refunding it.", (ToolUse("stripe_refund", by_charge),)),
        Reply(
            "Refunding it by the PaymentIntent.",
            (ToolUse("stripe_refund", {**by_charge, "payment": kettle["id"]}),),
        ),
    )
    aios = await start_aios(
        database_url,
        slack_api,
        clock,
        tmp_path,
        policy=PACKAGED_POLICY,
        STRIPE_API_KEY=API_KEY,
        STRIPE_API_BASE=localstripe.url,
        ANTHROPIC_API_KEY=ANTHROPIC_KEY,
        ANTHROPIC_BASE_URL=anthropic_api.url,
    )
    try:
        await slash(aios, f"refund $60 of {charge}, still wrong")
        [result] = anthropic_api.requests[1]["messages"][-1]["content"]
        assert result["is_error"] is True
        assert f"charge {charge} belongs to PaymentIntent {kettle['id']}" in result["content"]
        [action] = [r for r in await action_records(aios) if isinstance(r, ProposedAction)]
        assert action.params["payment"] == kettle["id"]
    finally:
        await aios.close()
