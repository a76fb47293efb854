from __future__ import annotations

import pytest

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


async def test_content_grammar() -> None:
    assert await plan('draft a post titled "Spring lookbook"', CONTENT, "") == [
        ("cms_create_draft", {"title": "Spring lookbook"})
    ]
    assert await plan("publish post spring-lookbook", CONTENT, "") == [
        ("cms_publish", {"slug": "spring-lookbook"})
    ]
    assert await plan("schedule post spring-lookbook for 2026-12-01T09:00:00Z", CONTENT, "") == [
        ("cms_publish", {"slug": "spring-lookbook", "publish_at": "2026-12-01T09:00:00Z"})
    ]


async def test_anything_else_gets_help_naming_examples() -> None:
    reply = await OfflinePlanner().complete(
        role="agent", call=CALL, system="", messages=[Message("user", "what's up")], tools=CONTENT
    )
    assert reply.tool_calls == [] and "publish post" in reply.text
