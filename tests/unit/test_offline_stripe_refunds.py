"""The offline planner refunding Stripe payments named by id or by the customer's email, from the lines the
returns agent puts in its context."""

from __future__ import annotations

import pytest

from agents.llm import CallContext, LLMReply, Message, ToolSpec
from agents.offline import OfflinePlanner

PAID = (
    "payment pi_3Kettle (charge ch_3Kettle): paid 120.00 USD on 2026-11-20, refunded 20.00, left 100.00, "
    "status succeeded"
)
CONTEXT = "\n".join(
    [
        "Context:",
        "order 1001: total $320.00, refundable $320.00, customer Maya <maya@example.com>, item Ceramic set",
        f"{PAID}, customer ana@example.com, description Blue kettle",
        "payment ch_1Euro: paid 50.00 EUR on 2026-11-21, refunded 0.00, left 50.00, status succeeded, "
        "customer ana@example.com, description (none)",
        "payments of ana@example.com: pi_3Kettle, pi_3Done (newest first)",
        "payment pi_3Done: paid 30.00 USD on 2026-11-02, refunded 30.00, left 0.00, status succeeded, "
        "customer ana@example.com, description Mug",
        "payments of bo@example.com: pi_3Bo1, pi_3Bo2 (newest first)",
        "payment pi_3Bo1: paid 80.00 USD on 2026-11-22, refunded 0.00, left 80.00, status succeeded, "
        "customer bo@example.com, description Lamp",
        "payment pi_3Bo2: paid 15.00 USD on 2026-11-01, refunded 5.00, left 10.00, status succeeded, "
        "customer bo@example.com, description Candle",
        "payments of cy@example.com: none in Stripe",
        "payment pi_3Down: could not be looked up just now (Stripe could not be reached: timed out)",
    ]
)
CALL = CallContext(intent_id=1, agent="returns", requester="U1", channel="C1")
TOOLS = [ToolSpec("shop_refund", "", {}), ToolSpec("email_send", "", {}), ToolSpec("stripe_refund", "", {})]


async def reply_to(text: str, tools: list[ToolSpec] = TOOLS) -> LLMReply:
    return await OfflinePlanner().complete(
        role="agent", call=CALL, system=CONTEXT, messages=[Message("user", text)], tools=tools
    )


async def calls(text: str) -> list[tuple[str, dict[str, object]]]:
    return [(call.name, call.input) for call in (await reply_to(text)).tool_calls]


@pytest.mark.parametrize(
    ("text", "amount", "reason"),
    [
        ("refund $20 of payment pi_3Kettle wrong size", 20.0, "wrong size"),
        ("<@UAIOSBOT> please refund payment pi_3Kettle in full", 100.0, "customer request"),
        ("refund the rest of pi_3Kettle, lid cracked", 100.0, "lid cracked"),
        ("refund pi_3Kettle $12.50 because it leaks", 12.5, "leaks"),
        ("refund the payment of ana@example.com", 100.0, "customer request"),
        ("refund <mailto:ana@example.com|ana@example.com> $5, late", 5.0, "late"),
    ],
)
async def test_a_payment_named_by_id_or_email_is_refunded(text: str, amount: float, reason: str) -> None:
    assert await calls(text) == [
        ("stripe_refund", {"payment": "pi_3Kettle", "amount": amount, "reason": reason})
    ]


@pytest.mark.parametrize(
    "text", ["refund $20 of payment ch_3Kettle wrong size", "refund charge ch_3Kettle $20, wrong size"]
)
async def test_a_payment_asked_for_by_its_charge_is_refunded_by_its_payment_intent(text: str) -> None:
    reply = await reply_to(text)
    assert [(c.name, c.input) for c in reply.tool_calls] == [
        ("stripe_refund", {"payment": "pi_3Kettle", "amount": 20.0, "reason": "wrong size"})
    ]
    assert "Stripe payment pi_3Kettle (charge ch_3Kettle) (Blue kettle)" in reply.text


async def test_an_email_with_several_payments_left_to_refund_lists_them_and_asks() -> None:
    reply = await reply_to("refund the payment of bo@example.com")
    assert reply.tool_calls == []
    assert "bo@example.com has 2 payments" in reply.text
    assert "pi_3Bo1: 80.00 USD on 2026-11-22, 80.00 left (Lamp)" in reply.text
    assert "pi_3Bo2: 15.00 USD on 2026-11-01, 10.00 left (Candle)" in reply.text
    assert "`refund $20 of payment pi_3Bo1`" in reply.text


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("refund the payment of cy@example.com", "no payments of cy@example.com"),
        ("refund payment pi_3Nowhere $10", "can't find payment pi_3Nowhere"),
        (
            "refund payment pi_3Down $10",
            "couldn't reach Stripe to look up payment pi_3Down (Stripe could not",
        ),
        ("refund payment pi_3Done", "nothing left to refund"),
        ("refund payment ch_1Euro €10", "made in EUR"),
        ("refund payment pi_3Kettle $10 and $20", "more than one amount"),
        ("refund payment pi_3Kettle $-5", "$-5"),
        (
            "refund payment pi_3Kettle scratched",
            "How much should I refund of payment pi_3Kettle ($100.00 is left)",
        ),
    ],
)
async def test_what_cannot_be_refunded_proposes_nothing_and_says_why(text: str, says: str) -> None:
    reply = await reply_to(text)
    assert reply.tool_calls == []
    assert says in reply.text


async def test_telling_the_customer_emails_the_payments_customer() -> None:
    found = await calls("refund $30 of payment pi_3Kettle, dented, and tell the customer")
    assert [name for name, _ in found] == ["stripe_refund", "email_send"]
    assert found[1][1]["to"] == "ana@example.com" and "$30.00" in str(found[1][1]["body"])


async def test_orders_are_still_refunded_as_orders_and_without_stripe_payments_are_not_guessed() -> None:
    [(name, params)] = await calls("refund order 1001 $40 for maya@example.com, strap tore")
    assert (name, params["order_id"], params["amount"]) == ("shop_refund", 1001, 40.0)
    without_stripe = await reply_to("refund $20 of payment pi_3Kettle", TOOLS[:2])
    assert without_stripe.tool_calls == [] and "Which order" in without_stripe.text
    assert "refund the payment of ana@example.com" in (await reply_to("hello", TOOLS)).text
