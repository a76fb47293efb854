"""The offline planner: a small grammar that plans the common intents with no model and no network.

It speaks the same :class:`agents.llm.LLM` interface as Claude. What it understands:

Returns and refunds (tool ``shop_refund``, optionally ``email_send``):
  * ``refund order 1001, $250, arrived broken``
  * ``refund $40 on order 1002 because the strap tore``
  * ``partial refund of $20 for order #1003: late delivery``
  * ``refund order 1004`` — no amount refunds what is left on the order
  * add ``and tell the customer`` / ``and email the customer`` to also send the customer an email

Content (tools ``cms_create_draft``, ``cms_publish``):
  * ``draft a post titled "Spring lookbook"`` (optionally ``with body "…"``)
  * ``publish post spring-lookbook`` or ``publish spring-lookbook``
  * ``schedule post spring-lookbook for 2026-12-01T09:00:00Z``

The agent puts what it knows (for example ``order 1001: total $320.00, refundable $320.00, customer …``)
in the system prompt; the planner reads it from there, as a model would.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from agents.llm import CallContext, LLMReply, Message, Role, ToolCall, ToolSpec

_ORDER = re.compile(r"\border\s*(?:no\.?|number|#)?\s*#?(\d{3,})", re.IGNORECASE)
_AMOUNT = re.compile(
    r"(?:\$|usd\s*)\s*(\d+(?:[.,]\d{1,2})?)|(\d+(?:\.\d{1,2})?)\s*(?:usd|dollars)\b", re.IGNORECASE
)
_TELL = re.compile(
    r"\b(?:and\s+)?(?:tell|email|notify|let)\s+(?:the\s+)?(?:customer|her|him|them)\b.*$", re.I
)
_CONTEXT = re.compile(
    r"order (\d+): total \$([\d.]+), refundable \$([\d.]+), customer (\S+) <([^>]+)>, item (.+)$",
    re.MULTILINE,
)
_TITLE = re.compile(
    r"\bdraft\b.*?\b(?:titled|called|named|:)\s*[\"“']?(.+?)[\"”']?(?:\s+with body\s+[\"“'](.+?)[\"”'])?\s*$",
    re.IGNORECASE | re.DOTALL,
)
_PUBLISH = re.compile(
    r"\bpublish\s+(?:the\s+)?(?:post\s+)?([a-z0-9]+(?:-[a-z0-9]+)*)\b(?:\s+(?:at|on)\s+(\S+))?", re.IGNORECASE
)
_SCHEDULE = re.compile(
    r"\bschedule\s+(?:the\s+)?(?:post\s+)?([a-z0-9]+(?:-[a-z0-9]+)*)\s+(?:for|at|on)\s+(\S+)", re.IGNORECASE
)
_FILLER = re.compile(
    r"\b(?:please|can you|could you|partial(?:ly)?|full|refund(?:\s+of)?|order|on|for|the|because|reason|"
    r"it|please)\b",
    re.IGNORECASE,
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
        return _number(_plan(messages[-1].content, system, {tool.name for tool in tools}))


def _number(reply: LLMReply) -> LLMReply:
    calls = [ToolCall(f"offline_{i}", c.name, c.input) for i, c in enumerate(reply.tool_calls, 1)]
    return LLMReply(reply.text, calls, "tool_use" if calls else "end_turn", model="offline")


def _plan(text: str, system: str, offered: set[str]) -> LLMReply:
    if "shop_refund" in offered and re.search(r"\brefund", text, re.IGNORECASE):
        return _plan_refund(text, system, offered)
    if "cms_publish" in offered:
        if match := _SCHEDULE.search(text):
            return LLMReply(
                f"Schedule {match.group(1)} for {match.group(2)} as asked.",
                [ToolCall("", "cms_publish", {"slug": match.group(1).lower(), "publish_at": match.group(2)})],
            )
        if match := _PUBLISH.search(text):
            params: dict[str, object] = {"slug": match.group(1).lower()}
            if match.group(2):
                params["publish_at"] = match.group(2)
            return LLMReply(f"Publish {params['slug']} as asked.", [ToolCall("", "cms_publish", params)])
    if "cms_create_draft" in offered and (match := _TITLE.search(text)):
        params = {"title": match.group(1).strip()}
        if match.group(2):
            params["body"] = match.group(2)
        return LLMReply(
            f"Create a draft titled “{params['title']}”.", [ToolCall("", "cms_create_draft", params)]
        )
    return LLMReply(_help(offered))


def _plan_refund(text: str, system: str, offered: set[str]) -> LLMReply:
    order = _ORDER.search(text)
    if order is None:
        return LLMReply(
            "Which order should I refund? Say, for example, `refund order 1001, $40, arrived broken`."
        )
    order_id = int(order.group(1))
    context = {int(m.group(1)): m for m in _CONTEXT.finditer(system)}
    known = context.get(order_id)
    if known is None:
        return LLMReply(f"I can't find order {order_id} in the shop, so I won't propose a refund for it.")
    amount_match = _AMOUNT.search(text)
    refundable = float(known.group(3))
    if amount_match:
        amount = float((amount_match.group(1) or amount_match.group(2)).replace(",", "."))
        how_much = f"${amount:,.2f} as asked"
    else:
        amount = refundable
        how_much = f"the ${amount:,.2f} still refundable, since no amount was given"
    if amount <= 0:
        return LLMReply(f"Order {order_id} has nothing left to refund.")
    tell = _TELL.search(text)
    reason = _reason(text[: tell.start()] if tell else text, order, amount_match)
    calls = [
        ToolCall("", "shop_refund", {"order_id": order_id, "amount": round(amount, 2), "reason": reason})
    ]
    rationale = (
        f"The requester asked to refund order {order_id} ({known.group(6)}): {how_much}; reason: {reason}."
    )
    if tell and "email_send" in offered:
        name, email = known.group(4), known.group(5)
        calls.append(
            ToolCall(
                "",
                "email_send",
                {
                    "to": email,
                    "subject": f"Your refund for order {order_id}",
                    "body": f"Hi {name},\n\nWe're sorry about your {known.group(6).lower()}. We have refunded "
                    f"${amount:,.2f} to your original payment method.\n\nThe team",
                },
            )
        )
        rationale += " They also asked to tell the customer, so an email is proposed too."
    return LLMReply(rationale, calls)


def _reason(text: str, order: re.Match[str], amount: re.Match[str] | None) -> str:
    spans = [order.span()] + ([amount.span()] if amount else [])
    for start, end in sorted(spans, reverse=True):
        text = text[:start] + " " + text[end:]
    text = _FILLER.sub(" ", text)
    text = re.sub(r"<@[A-Z0-9]+>", " ", text)
    text = re.sub(r"[\s,;:.!-]+", " ", text).strip()
    return text or "customer request"


def _help(offered: set[str]) -> str:
    lines = ["I work offline with a small grammar, and I didn't recognise that. Try:"]
    if "shop_refund" in offered:
        lines += ["• `refund order 1001, $250, arrived broken` (add `and tell the customer` to email them)"]
    if "cms_create_draft" in offered:
        lines += [
            '• `draft a post titled "Spring lookbook"`',
            "• `publish post spring-lookbook`",
            "• `schedule post spring-lookbook for 2026-12-01T09:00:00Z`",
        ]
    return "\n".join(lines)
