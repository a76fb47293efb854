from __future__ import annotations

import asyncio
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from agents.llm import CallContext, Message, ToolSpec
from agents.offline import OfflinePlanner

CONTEXT = (
    "Context:\norder 1001: total $320.00, refundable $320.00, customer Maya <maya@example.com>, item Ceramic set\n"
    "order 1002: total $48.00, refundable $8.00, customer Tom <tom@example.com>, item Linen apron"
)
CALL = CallContext(intent_id=1, agent="returns", requester="U1", channel="C1")
RETURNS = [ToolSpec("shop_refund", "", {}), ToolSpec("email_send", "", {})]
CONTENT = [ToolSpec("cms_create_draft", "", {}), ToolSpec("cms_publish", "", {})]


async def plan(
    text: str, tools: list[ToolSpec] = RETURNS, system: str = CONTEXT
) -> list[tuple[str, dict[str, object]]]:
    reply = await OfflinePlanner().complete(
        role="agent", call=CALL, system=system, messages=[Message("user", text)], tools=tools
    )
    return [(call.name, call.input) for call in reply.tool_calls]


@pytest.mark.parametrize(
    ("text", "amount", "reason"),
    [
        ("refund order 1001, $250, arrived broken", 250.0, "arrived broken"),
        ("refund $40 on order 1001 because the strap tore", 40.0, "strap tore"),
        ("partial refund of $20.50 for order #1001: late delivery", 20.5, "late delivery"),
        ("<@UAIOSBOT> please refund order 1001 $12 dented", 12.0, "dented"),
        ("refund order 1001", 320.0, "customer request"),
    ],
)
async def test_refund_variants(text: str, amount: float, reason: str) -> None:
    assert await plan(text) == [("shop_refund", {"order_id": 1001, "amount": amount, "reason": reason})]


async def test_no_amount_refunds_what_is_left() -> None:
    assert (await plan("refund order 1002"))[0][1]["amount"] == 8.0


async def test_telling_the_customer_adds_an_email() -> None:
    calls = await plan("refund order 1001, $30, scratched, and tell the customer")
    assert [name for name, _ in calls] == ["shop_refund", "email_send"]
    assert calls[0][1]["reason"] == "scratched"
    assert calls[1][1]["to"] == "maya@example.com"


async def test_unknown_orders_and_missing_order_numbers_propose_nothing() -> None:
    reply = await OfflinePlanner().complete(
        role="agent",
        call=CALL,
        system=CONTEXT,
        messages=[Message("user", "refund order 4242")],
        tools=RETURNS,
    )
    assert reply.tool_calls == [] and "can't find order 4242" in reply.text
    assert await plan("refund the blender") == []


async def test_a_shop_that_could_not_be_reached_is_not_called_a_missing_order() -> None:
    system = CONTEXT + "\norder 1003: could not be looked up just now (the shop did not answer)"
    reply = await OfflinePlanner().complete(
        role="agent",
        call=CALL,
        system=system,
        messages=[Message("user", "refund order 1003 $20")],
        tools=RETURNS,
    )
    assert reply.tool_calls == []
    assert "couldn't reach the shop to look up order 1003 (the shop did not answer)" in reply.text
    assert "can't find" not in reply.text


async def test_content_grammar() -> None:
    assert await plan('draft a post titled "Spring lookbook"', CONTENT, "") == [
        ("cms_create_draft", {"title": "Spring lookbook"})
    ]
    assert await plan("publish post spring-lookbook", CONTENT, "") == [
        ("cms_publish", {"slug": "spring-lookbook"})
    ]
    assert await plan("schedule post spring-lookbook for 2026-12-01T09:00:00Z", CONTENT, "") == [
        ("cms_publish", {"slug": "spring-lookbook", "publish_at": "2026-12-01T09:00:00+00:00"})
    ]


async def test_anything_else_gets_help_naming_examples() -> None:
    reply = await OfflinePlanner().complete(
        role="agent", call=CALL, system="", messages=[Message("user", "what's up")], tools=CONTENT
    )
    assert reply.tool_calls == [] and "publish post" in reply.text


ORDER_1004 = "\norder 1004: total $75.50, refundable $75.50, customer Sam <sam@example.com>, item Skillet"


async def reply_to(text: str) -> tuple[list[tuple[str, dict[str, object]]], str]:
    reply = await OfflinePlanner().complete(
        role="agent", call=CALL, system=CONTEXT + ORDER_1004, messages=[Message("user", text)], tools=RETURNS
    )
    return [(call.name, call.input) for call in reply.tool_calls], reply.text


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("refund order 1004 $-5", "“$-5” is a negative amount"),
        ("refund order 1004 -$5", "“-$5” is a negative amount"),
        ("refund order 1004 €20 scratched", "the shop takes USD), and “€20” is in EUR"),
        ("refund order 1004 20 euros", "“20 euros” is in EUR"),
        ("refund order 1004 £20", "is in GBP"),
        ("refund order 1004 EUR 20", "is in EUR"),
        (
            "refund order 1002 $abc",
            "I couldn't read “$abc” as an amount; say it like `refund order 1002 $20`",
        ),
        ("refund order 1002 $0", "“$0” is nothing to refund"),
        ("refund order 1004 $12.345", "“$12.345” has more than two decimals"),
        ("refund order 1004 $20 and $30", "more than one amount"),
        ("refund order 1004, scratched", "How much should I refund on order 1004 ($75.50 is left)?"),
        ("refund order 1004 20", "I couldn't tell whether “20” is an amount"),
        ("partial refund for order 1004", "How much should I refund"),
    ],
)
async def test_an_amount_that_cannot_be_used_proposes_nothing_and_says_how_to_say_it(
    text: str, says: str
) -> None:
    calls, reply = await reply_to(text)
    assert calls == [] and says in reply


@pytest.mark.parametrize(
    "text",
    ["refund order 1004", "refund the rest of 1004", "refund order 1004 in full", "full refund on #1004"],
)
async def test_only_words_that_ask_for_everything_refund_what_is_left(text: str) -> None:
    calls, _ = await reply_to(text)
    assert calls == [("shop_refund", {"order_id": 1004, "amount": 75.5, "reason": "customer request"})]


@pytest.mark.parametrize(
    ("text", "amount", "reason"),
    [
        ("refund order 1004 $20 arrived 2026-01-05, 3 days late", 20.0, "arrived 2026-01-05 3 days late"),
        ("refund order 1004 USD 20 late", 20.0, "late"),
        ("refund order 1004 $1,250.00 lost", 1250.0, "lost"),
        ("refund order 1004 $12,50 dented", 12.5, "dented"),
        ("refund 20 dollars on order 1004, 2 items broken", 20.0, "2 items broken"),
    ],
)
async def test_order_numbers_dates_and_other_numbers_are_not_amounts(
    text: str, amount: float, reason: str
) -> None:
    calls, _ = await reply_to(text)
    assert calls == [("shop_refund", {"order_id": 1004, "amount": amount, "reason": reason})]


REASON_WORDS = st.sampled_from(
    ["scratched", "late", "3", "days", "2026-01-05", "12:30", "x2", "box", "#7", "of"]
)


@given(cents=st.integers(min_value=1, max_value=10_000_000), words=st.lists(REASON_WORDS, max_size=5))
def test_a_dollar_amount_is_read_exactly_whatever_the_reason_says(cents: int, words: list[str]) -> None:
    amount = Decimal(cents) / 100
    calls, _ = asyncio.run(reply_to(f"refund order 1004 ${amount} {' '.join(words)}"))
    assert [(name, params["amount"]) for name, params in calls] == [("shop_refund", float(amount))]


@given(suffix=st.text(max_size=12))
def test_a_written_amount_never_falls_back_to_what_is_left(suffix: str) -> None:
    calls, _ = asyncio.run(reply_to(f"refund order 1004 ${suffix}"))
    assert all(params["amount"] != 75.5 for _, params in calls) or suffix.startswith("75.5")


@given(
    number=st.one_of(
        st.decimals(max_value=0, places=2, allow_nan=False, allow_infinity=False),
        st.decimals(min_value=Decimal("0.001"), max_value=1000, places=3).filter(
            lambda d: d != d.quantize(Decimal("0.01"))
        ),
    ),
    currency=st.sampled_from(["$", "USD ", "€", "EUR ", "£"]),
)
def test_negative_zero_sub_cent_or_foreign_amounts_propose_nothing(number: Decimal, currency: str) -> None:
    calls, reply = asyncio.run(reply_to(f"refund order 1004 {currency}{number} scratched"))
    assert calls == [] and "`refund order 1004 $20 scratched`" in reply
