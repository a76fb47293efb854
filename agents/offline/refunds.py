"""Offline grammar for refunds: of an order (tool ``shop_refund``) or of a Stripe payment (``stripe_refund``),
optionally with ``email_send``."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal

from agents.amounts import AmountProblem, find_money, read_amount
from agents.base import ESCALATE_TOOL
from agents.llm import LLMReply, ToolCall
from agents.offline.grammar import Grammar
from agents.patterns import MAILTO, UNNAMED
from connectors.stripe_payments import EMAIL, PAYMENT_ID

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


# What the returns agent says about a Stripe payment (agents/returns.py), and about an email's payments.
# A payment with a PaymentIntent names its charge too: it may be asked for by either id, and is refunded by the
# PaymentIntent's, so that every refund of one payment is counted under one id.
_PAYMENT_LINE = re.compile(
    r"^payment (?P<id>(?:pi|ch|py)_[A-Za-z0-9]+)(?: \(charge (?P<charge>(?:ch|py)_[A-Za-z0-9]+)\))?: "
    r"paid (?P<paid>[\d.]+) (?P<currency>[A-Z]{3}) on (?P<date>\S+), refunded (?P<refunded>[\d.]+), "
    r"left (?P<left>[\d.]+), status (?P<status>\S+), customer (?P<customer>\S+), description (?P<description>.*)$",
    re.MULTILINE,
)
_PAYMENT_FILLER = re.compile(r"\b(?:payment|charge|stripe|of|from|by|customer)\b", re.IGNORECASE)


def plan(text: str, system: str, offered: set[str]) -> LLMReply | None:
    if not re.search(r"\brefund", text, re.IGNORECASE):
        return None
    if "stripe_refund" in offered and (reply := _plan_payment_refund(text, system, offered)) is not None:
        return reply
    if "shop_refund" in offered:
        return _plan_refund(text, system, offered)
    return None


def examples(offered: set[str]) -> list[str]:
    found = []
    if "shop_refund" in offered:
        found.append("`refund order 1001, $250, arrived broken` (add `and tell the customer` to email them)")
    if "stripe_refund" in offered:
        found.append("`refund $20 of payment pi_3Q… wrong size` or `refund the payment of ana@example.com`")
    return found


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
    asked_for = _how_much(
        asked,
        _Target(
            f"on order {order_id}",
            order.span(),
            Decimal(known.group(3)),
            lambda reason: _example(order_id, reason),
            f"`refund order {order_id} in full`",
            _reason,
        ),
        offered,
    )
    if isinstance(asked_for, LLMReply):
        return asked_for
    amount, how_much, reason = asked_for
    calls = [ToolCall("", "shop_refund", {"order_id": order_id, "amount": float(amount), "reason": reason})]
    rationale = (
        f"The requester asked to refund order {order_id} ({known.group(6)}): {how_much}; reason: {reason}."
    )
    if tell and "email_send" in offered:
        name, email = known.group(4).replace(UNNAMED, "there"), known.group(5)
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


def _plan_payment_refund(text: str, system: str, offered: set[str]) -> LLMReply | None:
    """A refund of a Stripe payment named by its id, or by its customer's email; None when the words name
    neither (or name an order), so the order grammar plans them."""
    tell = _TELL.search(text)
    asked = _MENTION.sub(lambda m: " " * len(m.group()), text[: tell.start()] if tell else text)
    asked = MAILTO.sub(lambda m: m.group(1).ljust(len(m.group())), asked)  # positions stay where they were
    named = PAYMENT_ID.search(asked)
    if named is None:
        named = EMAIL.search(asked)
        if named is None or _find_order(asked) is not None:
            return None
        chosen = _payment_of(named.group(), system)
        if isinstance(chosen, LLMReply):
            return chosen
    else:
        chosen = _payment(named.group(), system)
        if isinstance(chosen, LLMReply):
            return chosen
    payment_id, currency, left = chosen["id"], chosen["currency"], Decimal(chosen["left"])
    if currency != "USD":
        return LLMReply(f"Payment {payment_id} was made in {currency}, and refunds are made in USD only.")
    asked_for = _how_much(
        asked,
        _Target(
            f"of payment {payment_id}",
            named.span(),
            left,
            lambda reason: _payment_example(payment_id, reason),
            f"`refund payment {payment_id} in full`",
            _payment_reason,
        ),
        offered,
    )
    if isinstance(asked_for, LLMReply):
        return asked_for
    amount, how_much, reason = asked_for
    calls = [
        ToolCall("", "stripe_refund", {"payment": payment_id, "amount": float(amount), "reason": reason})
    ]
    charge = f" (charge {chosen['charge']})" if chosen["charge"] else ""
    described = chosen["description"] if chosen["description"] != "(none)" else "no description"
    rationale = (
        f"The requester asked to refund Stripe payment {payment_id}{charge} ({described}): {how_much}; "
        f"reason: {reason}."
    )
    customer = chosen["customer"]
    if tell and "email_send" in offered and EMAIL.fullmatch(customer):
        calls.append(
            ToolCall(
                "",
                "email_send",
                {
                    "to": customer,
                    "subject": "Your refund",
                    "body": f"Hello,\n\nWe have refunded ${amount:,.2f} of your payment to your original payment "
                    "method.\n\nThe team",
                },
            )
        )
        rationale += " They also asked to tell the customer, so an email is proposed too."
    return LLMReply(rationale, calls)


@dataclass(frozen=True)
class _Target:
    """What a refund request names (an order, a payment), and how to talk about it."""

    named: str  # "on order 1004", "of payment pi_…"
    span: tuple[int, int]
    left: Decimal
    example: Callable[[str], str]  # the reason → an example request
    in_full: str
    reason: Callable[[str, list[tuple[int, int]]], str]


def _how_much(asked: str, target: _Target, offered: set[str]) -> tuple[Decimal, str, str] | LLMReply:
    """The amount asked for, how to say it, and the reason; or the reply asking for a readable amount."""
    money = find_money(_blank(asked, [target.span]))
    example = target.example(target.reason(asked, [target.span, *(m.span for m in money)]))
    if len(money) > 1:
        said = ", ".join(f"“{m.written}”" for m in money)
        # What stands between the amounts ("and", "or maybe") is no part of the reason the example repeats.
        between = (money[0].span[0], money[-1].span[1])
        example = target.example(target.reason(asked, [target.span, between]))
        text = f"I found more than one amount ({said}), so I won't guess; say one, like {example}."
        if ESCALATE_TOOL not in offered:
            return LLMReply(text)
        # Two amounts for one refund is a question about money: a person settles it, not the grammar.
        reason = f"The request names more than one amount ({said}) {target.named}, and I won't guess which."
        question = f"How much should be refunded {target.named}? Answer with the request, like {example}."
        return LLMReply(text, [ToolCall("", ESCALATE_TOOL, {"reason": reason, "question": question})])
    whole = _WHOLE.search(asked)
    spans = [target.span, *(m.span for m in money), *([whole.span()] if whole else [])]
    reason = target.reason(asked, spans)
    if money:
        amount = read_amount(money[0], example)
        if isinstance(amount, AmountProblem):
            return LLMReply(amount.message + ".")
        how_much = f"${amount:,.2f} as asked"
    elif (whole or reason == _NO_REASON) and not _PARTIAL.search(asked):
        amount = target.left
        how_much = f"the ${amount:,.2f} still refundable, as asked"
    else:
        bare = _BARE_NUMBER.search(_blank(asked, [target.span]))
        unclear = f"I couldn't tell whether “{bare.group()}” is an amount. " if bare else ""
        example = target.example(target.reason(asked, spans + ([bare.span()] if bare else [])))
        return LLMReply(
            f"{unclear}How much should I refund {target.named} (${target.left:,.2f} is left)? Say it with a "
            f"dollar sign, like {example}, or {target.in_full} for all of it."
        )
    if amount <= 0:
        what = target.named.split(" ", 1)[1]  # "order 1004", "payment pi_…"
        return LLMReply(f"{what[0].upper()}{what[1:]} has nothing left to refund.")
    return amount, how_much, reason


def _payment(payment_id: str, system: str) -> re.Match[str] | LLMReply:
    """The context line of this payment, or the reply saying why there is none."""
    for line in _PAYMENT_LINE.finditer(system):
        if payment_id in (line["id"], line["charge"]):
            return line
    unreachable = re.search(
        rf"^payment {re.escape(payment_id)}: could not be looked up just now (.*)$", system, re.MULTILINE
    )
    if unreachable:
        return LLMReply(
            f"I couldn't reach Stripe to look up payment {payment_id} {unreachable.group(1)}, so I proposed "
            "nothing; please ask again in a moment."
        )
    return LLMReply(f"I can't find payment {payment_id} in Stripe, so I won't propose a refund of it.")


def _payment_of(email: str, system: str) -> re.Match[str] | LLMReply:
    """The one payment of this customer with something left to refund, or the reply listing them."""
    header = re.search(rf"^payments of {re.escape(email.lower())}: (.*)$", system, re.MULTILINE)
    if header is None or header.group(1) == "none in Stripe":
        return LLMReply(f"I found no payments of {email} in Stripe, so I won't propose a refund.")
    if header.group(1).startswith("could not be looked up just now"):
        return LLMReply(
            f"I couldn't reach Stripe to look up the payments of {email} "
            f"{header.group(1).removeprefix('could not be looked up just now ')}, so I proposed nothing; please "
            "ask again in a moment."
        )
    ids = re.findall(r"(?:pi|ch|py)_[A-Za-z0-9]+", header.group(1))
    lines = {m["id"]: m for m in _PAYMENT_LINE.finditer(system)}
    payments = [lines[i] for i in ids if i in lines]
    open_ = [m for m in payments if Decimal(m["left"]) > 0]
    if len(open_) == 1:
        return open_[0]
    if not open_:
        return LLMReply(f"The payments of {email} in Stripe have nothing left to refund.")
    listed = "\n".join(
        f"• {m['id']}: {m['paid']} {m['currency']} on {m['date']}, {m['left']} left ({m['description']})"
        for m in open_
    )
    return LLMReply(
        f"{email} has {len(open_)} payments with something left to refund:\n{listed}\nWhich one? Say, for "
        f"example, {_payment_example(open_[0]['id'], _NO_REASON)}."
    )


def _payment_example(payment_id: str, reason: str) -> str:
    return f"`refund $20 of payment {payment_id}{'' if reason == _NO_REASON else ' ' + reason}`"


def _payment_reason(text: str, spans: list[tuple[int, int]]) -> str:
    return _reason(_PAYMENT_FILLER.sub(lambda m: " " * len(m.group()), text), spans)


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
