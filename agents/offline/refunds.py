"""Offline grammar for refunds (tool ``shop_refund``, optionally ``email_send``)."""

from __future__ import annotations

import re
from decimal import Decimal

from agents.amounts import AmountProblem, find_money, read_amount
from agents.llm import LLMReply, ToolCall
from agents.offline.grammar import Grammar

_ORDER = re.compile(r"\border\s*(?:no\.?|number|#)?\s*#?(\d{3,})\b", re.IGNORECASE)
_LOOSE_ORDER = re.compile(r"(?:#|\b(?:of|on|for|refund)\s+#?)(\d{3,})\b(?![.,]\d)", re.IGNORECASE)
# Words that ask for everything still refundable; only these (or no words at all) may mean "what is left".
_WHOLE = re.compile(
    r"\b(?:in\s+full|full(?=\s+refund)|fully|(?:the\s+)?(?:rest|remainder)(?:\s+of)?|"
    r"what(?:'s|\s+is)\s+left|everything|all\s+of\s+it)\b",
    re.IGNORECASE,
)
_PARTIAL = re.compile(r"\bpartial", re.IGNORECASE)
_BARE_NUMBER = re.compile(r"(?<![\w.,/:-])\d+(?:[.,]\d+)?(?![\w/:-]|[.,]\d)")
_MENTION = re.compile(r"<[@!#][^>]*>")
_NO_REASON = "customer request"
_TELL = re.compile(
    r"\b(?:and\s+)?(?:tell|email|notify|let)\s+(?:the\s+)?(?:customer|her|him|them)\b.*$", re.I
)
_CONTEXT = re.compile(
    r"order (\d+): total \$([\d.]+), refundable \$([\d.]+), customer (\S+) <([^>]+)>, item (.+)$",
    re.MULTILINE,
)
_FILLER = re.compile(
    r"\b(?:please|can you|could you|partial(?:ly)?|full|refund(?:\s+of)?|order|on|for|the|because|reason|"
    r"it|please)\b",
    re.IGNORECASE,
)


def plan(text: str, system: str, offered: set[str]) -> LLMReply | None:
    if "shop_refund" in offered and re.search(r"\brefund", text, re.IGNORECASE):
        return _plan_refund(text, system, offered)
    return None


def examples(offered: set[str]) -> list[str]:
    if "shop_refund" not in offered:
        return []
    return ["`refund order 1001, $250, arrived broken` (add `and tell the customer` to email them)"]


def _plan_refund(text: str, system: str, offered: set[str]) -> LLMReply:
    tell = _TELL.search(text)
    asked = _MENTION.sub(lambda m: " " * len(m.group()), text[: tell.start()] if tell else text)
    order = _find_order(asked)
    if order is None:
        return LLMReply(
            "Which order should I refund? Say, for example, `refund order 1001, $40, arrived broken`."
        )
    order_id = int(order.group(1))
    context = {int(m.group(1)): m for m in _CONTEXT.finditer(system)}
    known = context.get(order_id)
    if known is None:
        unreachable = re.search(
            rf"^order {order_id}: could not be looked up just now (.*)$", system, re.MULTILINE
        )
        if unreachable:
            return LLMReply(
                f"I couldn't reach the shop to look up order {order_id} {unreachable.group(1)}, so I proposed "
                "nothing; please ask again in a moment."
            )
        return LLMReply(f"I can't find order {order_id} in the shop, so I won't propose a refund for it.")
    refundable = float(known.group(3))
    money = find_money(_blank(asked, [order.span()]))
    example = _example(order_id, _reason(asked, [order.span(), *(m.span for m in money)]))
    if len(money) > 1:
        said = ", ".join(f"“{m.written}”" for m in money)
        return LLMReply(f"I found more than one amount ({said}), so I won't guess; say one, like {example}.")
    whole = _WHOLE.search(asked)
    spans = [order.span(), *(m.span for m in money), *([whole.span()] if whole else [])]
    reason = _reason(asked, spans)
    if money:
        amount = read_amount(money[0], example)
        if isinstance(amount, AmountProblem):
            return LLMReply(amount.message + ".")
        how_much = f"${amount:,.2f} as asked"
    elif (whole or reason == _NO_REASON) and not _PARTIAL.search(asked):
        amount = Decimal(known.group(3))
        how_much = f"the ${amount:,.2f} still refundable, as asked"
    else:
        bare = _BARE_NUMBER.search(_blank(asked, [order.span()]))
        unclear = f"I couldn't tell whether “{bare.group()}” is an amount. " if bare else ""
        example = _example(order_id, _reason(asked, spans + ([bare.span()] if bare else [])))
        return LLMReply(
            f"{unclear}How much should I refund on order {order_id} (${refundable:,.2f} is left)? Say it "
            f"with a dollar sign, like {example}, or `refund order {order_id} in full` for all of it."
        )
    if amount <= 0:
        return LLMReply(f"Order {order_id} has nothing left to refund.")
    calls = [ToolCall("", "shop_refund", {"order_id": order_id, "amount": float(amount), "reason": reason})]
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


def _find_order(text: str) -> re.Match[str] | None:
    """``order 1004`` first; else a number named as the order (``#1004``, ``the rest of 1004``), never money."""
    if order := _ORDER.search(text):
        return order
    money = [m.span for m in find_money(text)]
    for candidate in _LOOSE_ORDER.finditer(text):
        if not any(start < candidate.end(1) and candidate.start(1) < end for start, end in money):
            return candidate
    return None


def _example(order_id: int, reason: str) -> str:
    return f"`refund order {order_id} $20{'' if reason == _NO_REASON else ' ' + reason}`"


def _blank(text: str, spans: list[tuple[int, int]]) -> str:
    """``text`` with these spans replaced by spaces: positions stay where they were."""
    for start, end in spans:
        text = text[:start] + " " * (end - start) + text[end:]
    return text


def _reason(text: str, spans: list[tuple[int, int]]) -> str:
    text = _FILLER.sub(" ", _blank(text, spans))
    # Punctuation between words goes; inside a word or number ("2026-01-05", "cast-iron") it stays.
    text = re.sub(r"(?:\s|[,;:.!?-](?!\w)|(?<!\w)[,;:.!?-])+", " ", text).strip()
    return text or _NO_REASON


GRAMMAR = Grammar(plan, examples)
