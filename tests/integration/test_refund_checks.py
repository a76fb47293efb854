"""A refund is checked against its order before anyone is asked: nothing the shop is certain to refuse is
proposed, whether the offline grammar or Claude planned it."""

from __future__ import annotations

import pytest
from sqlmodel import select

from bot.bootstrap import Aios
from connectors.sandbox_state import sandbox_state
from storage.records import Approval, ProposedAction
from tests.fakes.anthropic_api import FakeAnthropicApi, Reply, ToolUse
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import ask


async def proposed(aios: Aios) -> list[ProposedAction]:
    async with aios.units() as uow:
        return list((await uow.session.exec(select(ProposedAction))).all())


async def approvals(aios: Aios) -> list[Approval]:
    async with aios.units() as uow:
        return list((await uow.session.exec(select(Approval))).all())


def said(slack_api: FakeSlackApi) -> str:
    return "\n".join(c.params["text"] for c in slack_api.calls_to("chat.postMessage"))


async def test_more_than_is_left_is_not_put_to_a_manager(aios: Aios, slack_api: FakeSlackApi) -> None:
    await ask(aios, "refund order 1002 $5000 never arrived")

    assert await proposed(aios) == [] and await approvals(aios) == []
    assert "order 1002 has $48.00 left to refund" in said(slack_api)
    assert (await sandbox_state(aios.units))["refunds"] == []


async def test_an_order_refunded_in_full_has_nothing_left(aios: Aios, slack_api: FakeSlackApi) -> None:
    await ask(aios, "refund order 1004 in full", thread_ts="1.1")
    await ask(aios, "refund order 1004 $5 late", thread_ts="1.2")

    assert [a.params["amount"] for a in await proposed(aios)] == [75.5]
    assert "order 1004 has nothing left to refund" in said(slack_api)


async def test_a_refund_the_shop_refuses_takes_its_email_with_it(aios: Aios, slack_api: FakeSlackApi) -> None:
    await ask(aios, "refund order 1002 $60, torn, and tell the customer")

    assert await proposed(aios) == []
    assert "has $48.00 left to refund" in said(slack_api)


@pytest.mark.parametrize(
    ("text", "reply"),
    [
        ("refund order 1004 $-5", "is a negative amount"),
        ("refund order 1004 €20 scratched", "the shop takes USD"),
        (
            "refund order 1002 $abc",
            "I couldn't read “$abc” as an amount; say it like `refund order 1002 $20`",
        ),
        ("refund order 1002 $0", "is nothing to refund"),
        ("refund order 1004 20 euros", "the shop takes USD"),
        ("refund order 1004 $12.345", "more than two decimals"),
    ],
)
async def test_an_amount_that_cannot_be_read_moves_no_money(
    aios: Aios, slack_api: FakeSlackApi, text: str, reply: str
) -> None:
    await ask(aios, text)

    assert await proposed(aios) == []
    assert reply in said(slack_api)
    assert (await sandbox_state(aios.units))["refunds"] == []


@pytest.mark.parametrize(
    ("amount", "error"),
    [
        (5000.0, "order 1002 has $48.00 left to refund"),
        (-5.0, "amount: Input should be greater than 0"),
        (12.345, "amount: Input should be a multiple of 0.01"),
    ],
)
async def test_a_claude_planned_refund_is_checked_too(
    claude_aios: Aios,
    anthropic_api: FakeAnthropicApi,
    slack_api: FakeSlackApi,
    amount: float,
    error: str,
) -> None:
    refund = ToolUse("shop_refund", {"order_id": 1002, "amount": amount, "reason": "never arrived"})
    anthropic_api.script(Reply("Refunding it.", (refund,)), Reply("I can't refund that much."))
    await ask(claude_aios, "refund order 1002, never arrived")

    [result] = anthropic_api.requests[1]["messages"][-1]["content"]
    assert result["is_error"] is True and error in result["content"]
    assert await proposed(claude_aios) == []
    assert error in said(slack_api)


async def test_two_refunds_on_one_order_are_checked_against_what_is_left_together(
    claude_aios: Aios, anthropic_api: FakeAnthropicApi, slack_api: FakeSlackApi
) -> None:
    # Order 1003 has $129.00 left: $80 fits, the $50 after it does not.
    first = ToolUse("shop_refund", {"order_id": 1003, "amount": 80.0, "reason": "broken jar"})
    second = ToolUse("shop_refund", {"order_id": 1003, "amount": 50.0, "reason": "late delivery"})
    anthropic_api.script(Reply("Refunding both.", (first, second)), Reply("Only the first fits."))
    await ask(claude_aios, "refund order 1003 $80 for the jar and $50 for the delay")

    results = anthropic_api.requests[1]["messages"][-1]["content"]
    assert [r["is_error"] for r in results] == [False, True]
    error = "order 1003 has $49.00 left to refund after the $80.00 already proposed"
    assert error in results[1]["content"]
    # A plan with a refused step proposes none of it; the thread says why.
    assert await proposed(claude_aios) == []
    assert error in said(slack_api)
