"""The offline grammar asks a person, through the same escalate_to_human tool a model is offered, when the
money of a refund is ambiguous; everything else it cannot plan stays a plain answer."""

from __future__ import annotations

import pytest

from agents.base import ESCALATE_SPEC, ESCALATE_TOOL
from agents.llm import CallContext, LLMReply, Message, ToolSpec
from agents.offline import OfflinePlanner
from bot import blocks
from bot.console import render
from bot.slash import bus_command, parse_slash
from runtime.messages import TakeOverRun
from runtime.notices import EscalationMessage

CONTEXT = (
    "Context:\norder 1004: total $75.50, refundable $75.50, customer Sam <sam@example.com>, item Skillet\n"
    "payment pi_3QAbc: paid 40.00 USD on 2026-11-01, refunded 0.00, left 40.00, status succeeded, "
    "customer ana@example.com, description Mug"
)
CALL = CallContext(intent_id=1, agent="returns", requester="U1", channel="C1")
OFFERED = [ToolSpec("shop_refund", "", {}), ToolSpec("stripe_refund", "", {}), ESCALATE_SPEC]


async def reply_to(text: str) -> LLMReply:
    return await OfflinePlanner().complete(
        role="agent", call=CALL, system=CONTEXT, messages=[Message("user", text)], tools=OFFERED
    )


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ("refund order 1004 $20 and $30", "on order 1004"),
        ("refund $5 of payment pi_3QAbc, or maybe $10", "of payment pi_3QAbc"),
    ],
)
async def test_more_than_one_amount_is_escalated_with_the_amounts_found(text: str, named: str) -> None:
    reply = await reply_to(text)
    [call] = reply.tool_calls
    assert call.name == ESCALATE_TOOL and "won't guess" in reply.text
    assert str(call.input["reason"]).startswith("The request names more than one amount (“$")
    assert named in str(call.input["reason"]) and named in str(call.input["question"])


@pytest.mark.parametrize(
    "text",
    [
        "refund order 9999 $20",  # a missing order
        "refund order 1004 €20",  # an amount written so it cannot be used: the reply says how
        "refund order 1004, scratched",  # no amount: the requester is asked how much
        "refund order 1004 20",  # a bare number
    ],
)
async def test_what_the_requester_can_fix_is_a_plain_answer(text: str) -> None:
    reply = await reply_to(text)
    assert reply.tool_calls == [] and reply.text


def test_a_long_reason_and_question_still_make_a_valid_message() -> None:
    text, rendered = blocks.escalation(
        EscalationMessage("R-5", "returns agent", "<@U0MANAGER>", "why " * 2000, "what? " * 2000)
    )
    assert len(text) <= blocks.FALLBACK_TEXT_MAX
    assert rendered[-1]["elements"][0]["action_id"] == blocks.TAKE_OVER_ACTION_ID
    assert rendered[-1]["elements"][0]["value"] == "R-5"


def test_the_console_names_the_command_that_takes_over() -> None:
    text, rendered = blocks.escalation(
        EscalationMessage("R-5", "returns agent", "<@U0MANAGER>", "two amounts", "which one?")
    )
    assert "[ Take over ]   (type: /aios take R-5)" in render(text, rendered)


@pytest.mark.parametrize(
    ("text", "command"),
    [
        ("take R-5", TakeOverRun(5, "U1", "C1")),
        ("take r-5 please", TakeOverRun(5, "U1", "C1")),
        ("take a look at order 1003", None),  # a request in words, not the subcommand
        ("take A-3", None),
        ("take R-99999999999", None),
    ],
)
def test_slash_take_names_a_run(text: str, command: TakeOverRun | None) -> None:
    parsed = parse_slash(text)
    assert bus_command(parsed, team="T", user="U1", channel="C1") == command
    assert (parsed.name == "intent") == (command is None)
