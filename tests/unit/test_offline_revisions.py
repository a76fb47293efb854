"""The offline grammar for planning again after a rejection: the agent's feedback turn (never words a person typed),
and the rejected call revised as the reviewer's words ask, or nothing proposed and a reply saying why."""

from __future__ import annotations

from typing import Any

import pytest

from agents.base import Feedback, FeedbackTurn
from agents.llm import CallContext, LLMReply, Message, ToolSpec
from agents.offline import OfflinePlanner, revisions

REFUND = {"order_id": 1001, "amount": 250.0, "reason": "arrived broken"}
OFFERED = {
    "shop_refund",
    "stripe_refund",
    "email_send",
    "cms_create_draft",
    "cms_publish",
    "wordpress_update",
}
# The content agent's context line: the team's zone and the time now, which a time is read against.
CONTEXT = "Team time zone: Europe/Berlin; it is now 2026-11-24T10:00:00+01:00."


def feedback(action: str, params: dict[str, Any], reason: str) -> Feedback:
    return Feedback(action, "what the card showed", params, "U0MANAGER", reason)


def revise(action: str, params: dict[str, Any], reason: str, system: str = "") -> LLMReply:
    return revisions.plan(feedback(action, params, reason), system, OFFERED)


CALL = CallContext(intent_id=1, agent="returns", requester="U0ALICE", channel="C0SHOP")
TOOLS = [ToolSpec("shop_refund", "Refund part or all of an order", {"type": "object"})]


async def test_feedback_typed_as_a_request_is_planned_as_a_request() -> None:
    """Only the agent's feedback turn is read as feedback: the same words typed by a requester are a request."""
    typed = feedback("shop.refund", REFUND, "refund $40").turn()
    planner = OfflinePlanner()
    as_typed = await planner.complete(
        role="agent", system="", messages=[Message("user", typed)], tools=TOOLS, call=CALL
    )
    assert "reviewer" not in as_typed.text
    assert all(call.input.get("amount") != 40.0 for call in as_typed.tool_calls)
    given = FeedbackTurn("user", typed, feedback("shop.refund", REFUND, "refund $40"))
    revised = await planner.complete(role="agent", system="", messages=[given], tools=TOOLS, call=CALL)
    [call] = revised.tool_calls
    assert call.input["amount"] == 40.0 and revised.text.startswith("Revised as the reviewer asked")


@pytest.mark.parametrize(
    "reason",
    [
        "refund only the broken item, $40",
        "$40 max",
        "only $40",
        "at most $40",
        "make it $40",
        "40 dollars is right",
        "don't refund more than $40",
        "refund order 1001, only $40",
    ],
)
def test_a_refund_becomes_the_amount_the_reviewer_named(reason: str) -> None:
    reply = revise("shop.refund", REFUND, reason)
    [call] = reply.tool_calls
    assert (call.name, call.input) == (
        "shop_refund",
        {"order_id": 1001, "amount": 40.0, "reason": f"arrived broken; reviewer: {reason}"},
    )
    assert reply.text == "Revised as the reviewer asked: refund $40.00 instead of $250.00."


def test_a_long_reason_is_cut_to_what_a_refund_keeps() -> None:
    [call] = revise("shop.refund", REFUND, "refund $40, " + "because " * 100).tool_calls
    reason = call.input["reason"]
    assert isinstance(reason, str) and len(reason) == 500 and reason.endswith("…")


@pytest.mark.parametrize(
    ("reason", "said"),
    [
        ("don't refund", "they said not to, so I propose nothing more"),
        ("no refund, she dropped it", "they said not to, so I propose nothing more"),
        ("no refund: they got $20 back already", "they said not to, so I propose nothing more"),
        ("no refunds for used items", "they said not to, so I propose nothing more"),
        ("ask the customer for a photo first", "it names no amount, so I propose nothing more"),
        ("refund €40", "I proposed nothing: I can only refund in US dollars"),
        ("refund $0", "I proposed nothing: “$0” is nothing to refund"),
        ("only $4.005", "I proposed nothing: “$4.005” has more than two decimals"),
        ("refund 40", "I couldn't tell whether “40” in the reviewer's reason is an amount"),
        ("$20 or $30", "names more than one amount (“$20”, “$30”), so I won't guess which"),
        # An amount told as what happened, or one for another order or payment, is no refund to make.
        ("the customer already got $40 back from support last week", "doesn't say to refund that amount"),
        ("they were refunded $40 yesterday", "doesn't say to refund that amount"),
        ("$40 was enough for the last one", "doesn't say to refund that amount"),
        ("the box cost $40", "doesn't say to refund that amount"),
        ("wrong order, refund order 1002 $40 instead", "it names order 1002, not the rejected refund's"),
        ("this is #1003's refund, $40 there", "it names order 1003, not the rejected refund's"),
        ("refund pi_3Q9 $40, not this one", "it names payment pi_3Q9, not the rejected refund's"),
    ],
)
def test_a_reason_it_cannot_use_proposes_nothing_and_says_why(reason: str, said: str) -> None:
    reply = revise("shop.refund", REFUND, reason)
    assert reply.tool_calls == [] and said in reply.text


def test_a_stripe_refund_keeps_its_payment() -> None:
    params = {
        "payment": "pi_3Q1",
        "amount": 80.0,
        "reason": "wrong size",
        "stripe_reason": "requested_by_customer",
    }
    [call] = revise("stripe.refund", params, "refund pi_3Q1 only $40, half of it").tool_calls
    assert call.name == "stripe_refund"
    assert call.input == {
        **params,
        "amount": 40.0,
        "reason": "wrong size; reviewer: refund pi_3Q1 only $40, half of it",
    }


def test_a_publish_goes_out_at_the_time_the_reviewer_named() -> None:
    reply = revise("cms.publish", {"slug": "spring-lookbook"}, "publish on Friday 9am", CONTEXT)
    [call] = reply.tool_calls
    assert call.input == {"slug": "spring-lookbook", "publish_at": "2026-11-27T09:00:00+01:00"}
    assert (
        reply.text
        == "Revised as the reviewer asked: going out Fri 27 Nov 2026 09:00 Europe/Berlin (08:00 UTC)."
    )


def test_not_before_a_time_is_that_time() -> None:
    [call] = revise(
        "cms.publish", {"slug": "spring-lookbook"}, "don't publish before Friday 9am", CONTEXT
    ).tool_calls
    assert call.input == {"slug": "spring-lookbook", "publish_at": "2026-11-27T09:00:00+01:00"}


def test_a_time_it_cannot_read_proposes_nothing() -> None:
    reply = revise("cms.publish", {"slug": "spring-lookbook"}, "publish on Blursday at 9", CONTEXT)
    assert reply.tool_calls == [] and reply.text.startswith("I didn't revise it: I can't read")


def test_a_draft_takes_the_quoted_title_and_a_planned_one_its_time() -> None:
    draft = {"title": "Winter", "planned_for": "2026-12-01T09:00:00+01:00"}
    [call] = revise(
        "cms.create_draft", draft, 'call it "Winter care" and plan it for Dec 3 at 10', CONTEXT
    ).tool_calls
    assert call.input == {"title": "Winter care", "planned_for": "2026-12-03T10:00:00+01:00"}
    [update] = revise("wordpress.update", {"slug": "winter", "body": "…"}, "title “Winter care”").tool_calls
    assert update.input == {"slug": "winter", "body": "…", "title": "Winter care"}
    nothing = revise("cms.create_draft", {"title": "Winter"}, "never publish this")
    assert nothing.tool_calls == [] and "noted the reviewer's reason" in nothing.text


async def test_the_planner_answers_the_feedback_turn_not_the_request_before_it() -> None:
    given = feedback("shop.refund", REFUND, "$40 max")
    messages = [
        Message("user", "refund order 1001, $250, arrived broken"),
        FeedbackTurn("user", given.turn(), given),
    ]
    reply = await OfflinePlanner().complete(role="agent", system="", messages=messages, tools=[], call=CALL)
    assert reply.tool_calls == []  # shop_refund is not offered here: noted, nothing proposed
    assert "I noted the reviewer's reason (“$40 max”)" in reply.text
