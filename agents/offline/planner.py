"""The offline planner: a small grammar that plans the common intents with no model and no network.

It speaks the same :class:`agents.llm.LLM` interface as Claude. What it understands:

Returns and refunds (tool ``shop_refund``, optionally ``email_send``):
  * ``refund order 1001, $250, arrived broken``
  * ``refund $40 on order 1002 because the strap tore``
  * ``partial refund of $20 for order #1003: late delivery``
  * ``refund order 1004``, ``refund the rest of 1004``, ``refund order 1004 in full`` — what is left
  * an amount must carry a dollar sign or ``USD``/``dollars``; one that is unreadable, negative, zero, finer
    than a cent or in another currency proposes nothing, and the reply says how to write it
  * a reason with no amount (``refund order 1004, scratched``) proposes nothing: the reply asks how much
  * more than one amount (``refund order 1004 $20 and $30``) is a question about money for a person: the
    planner calls ``escalate_to_human`` (when offered) with the amounts it found, and proposes nothing
  * add ``and tell the customer`` / ``and email the customer`` to also send the customer an email

Refunds of Stripe payments (tool ``stripe_refund``, when Stripe is configured), from the payments the agent
looked up for the id or email the words name:
  * ``refund $20 of payment pi_3Q… wrong size``, ``refund ch_3Q… $12.50 because it leaks``
  * ``refund payment ch_3Q… in full``, ``refund payment pi_3Q…`` — what is left on that payment
  * ``refund the payment of ana@example.com`` (with or without an amount): the customer's one payment with
    something left; when several have, the reply lists them and asks which
  * words that name an order are an order's refund, never a payment's

Content (tools ``cms_create_draft``, ``cms_publish``; ``wordpress_update`` when WordPress is configured):
  * ``draft a post titled "Spring lookbook"`` (optionally ``with body "…"``)
  * ``publish post spring-lookbook`` or ``publish spring-lookbook``
  * ``schedule post spring-lookbook for next Monday 9am`` (or ``publish spring-lookbook at tomorrow 14:00``,
    ``on Dec 3 at 9``, ``2026-12-01 09:00``): read in the team's time zone, which the agent's context names, and
    said back as an absolute date, time and zone; a time it cannot read proposes nothing, saying what it can
  * ``update post spring-lookbook title "Spring lookbook 2027"``, or ``body "…"``, ``excerpt "…"`` (several
    at once, each in quotes); an update written otherwise proposes nothing, and the reply says how to write it

A month's content calendar (tool ``cms_create_draft`` with ``planned_for``), for the scheduling agent:
  * ``plan December: two posts a week about winter care, Tuesdays and Fridays``, ``plan next month: one post
    a week about pricing, on Mondays``, ``plan 2026-12: 4 posts about gift guides``
  * the slots fall on the days asked, at the opening of that day's publishing window, in the team's zone, on
    days to come, never more than asked; titles already used (``Used before`` lines) are passed over; days
    without a window, or a request missing its count or topic, propose nothing and the reply says why

Webhooks (tool ``webhook_post``), to a webhook the context names as configured:
  * ``post {"event": "refund", "order": 1001} to webhook crm``
  * ``send to webhook crm: {"event": "refund", "order": 1001}``, ``notify crm {"event": "restock"}``
  * a body that is not one JSON object, or a webhook that is not configured, proposes nothing: the reply
    shows how to write it, or names the configured webhooks

Planning again after a reviewer rejected an action and said why (the agent's feedback turn, never words a person
typed: the rejected tool call, who rejected it, and their words), the rejected call revised, or nothing proposed:
  * a refund (``shop_refund``, ``stripe_refund``) with a reason telling the one amount to refund — ``refund only
    the broken item, $40``, ``only $40``, ``$40 max``, ``make it $40``, ``don't refund more than $40`` — is the
    same refund of that amount, the reviewer's words added to its reason; the amount must carry a dollar sign or
    ``USD``/``dollars``, and one that cannot be refunded (``€40``, ``$0``, ``$4.005``), a bare number, two
    amounts, an amount told as past (``he already got $40 back``) or another order or payment named propose
    nothing, and the reply says why
  * a post (``cms_create_draft``, ``cms_publish``, ``wordpress_update``) with a new title in quotes
    (``call it "Winter care"``) or a time (``publish on Friday 9am``, read in the team's zone) is the same call
    with it; a time it cannot read proposes nothing, saying what it can
  * ``don't refund``, ``no refund``, ``never publish this``, or a reason none of the above fits: nothing is
    proposed, and the reply says the reason was noted

The agent puts what it knows (for example ``order 1001: total $320.00, refundable $320.00, customer …``)
in the system prompt; the planner reads it from there, as a model would.
"""

from __future__ import annotations

from collections.abc import Sequence

from agents.base import FeedbackTurn
from agents.llm import CallContext, LLMReply, Message, Role, ToolCall, ToolSpec
from agents.offline import calendar, content, refunds, revisions, webhooks
from agents.offline.grammar import Grammar

# Tried in order; the first that recognises the request plans it.
GRAMMARS: tuple[Grammar, ...] = (
    refunds.GRAMMAR,
    calendar.GRAMMAR,
    content.GRAMMAR,
    webhooks.GRAMMAR,
)


class OfflinePlanner:
    name = "offline"

    def model_for(self, role: Role) -> str:
        return "offline"

    async def close(self) -> None:
        return None

    async def complete(
        self,
        *,
        role: Role,
        system: str,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        call: CallContext,
    ) -> LLMReply:
        if role == "dispatch" or not messages or not isinstance(messages[-1].content, str):
            # Routing needs judgement the grammar lacks, and after tool results there is nothing left to plan.
            return LLMReply("", model="offline")
        last = messages[-1]
        if isinstance(last, FeedbackTurn) and last.feedback is not None:
            # Set only by the agent from the structured feedback: words a person typed are never read as one.
            return _number(revisions.plan(last.feedback, system, {tool.name for tool in tools}))
        return _number(_plan(messages[-1].content, system, {tool.name for tool in tools}))


def _number(reply: LLMReply) -> LLMReply:
    calls = [ToolCall(f"offline_{i}", c.name, c.input) for i, c in enumerate(reply.tool_calls, 1)]
    return LLMReply(reply.text, calls, "tool_use" if calls else "end_turn", model="offline")


def _plan(text: str, system: str, offered: set[str]) -> LLMReply:
    for grammar in GRAMMARS:
        if (reply := grammar.plan(text, system, offered)) is not None:
            return reply
    return LLMReply(_help(offered))


def _help(offered: set[str]) -> str:
    lines = ["I work offline with a small grammar, and I didn't recognise that. Try:"]
    for grammar in GRAMMARS:
        lines += [f"• {example}" for example in grammar.examples(offered)]
    return "\n".join(lines)
