"""Reading a refund amount from a person's words, refusing rather than guessing.

An amount is only what carries a currency: ``$20``, ``20 dollars``, ``USD 20``, ``€20``. Bare numbers (order
numbers, dates, "3 days late") are never amounts. An amount that is present but unreadable, negative, zero,
finer than a cent, or in another currency is a :class:`AmountProblem` — never "no amount", which would refund
everything left on the order.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from decimal import Decimal

SHOP_CURRENCY = "USD"

_CURRENCIES = {
    "$": "USD",
    "us$": "USD",
    "usd": "USD",
    "dollar": "USD",
    "dollars": "USD",
    "buck": "USD",
    "bucks": "USD",
    "€": "EUR",
    "eur": "EUR",
    "euro": "EUR",
    "euros": "EUR",
    "£": "GBP",
    "gbp": "GBP",
    "pound": "GBP",
    "pounds": "GBP",
    "¥": "JPY",
    "jpy": "JPY",
    "yen": "JPY",
    "₹": "INR",
    "inr": "INR",
    "rupees": "INR",
    "cad": "CAD",
    "aud": "AUD",
    "chf": "CHF",
}
_SYMBOL = r"us\$|[$€£¥₹]"
_CODE = r"usd|eur|gbp|jpy|inr|cad|aud|chf"
_WORD = r"dollars?|bucks?|euros?|pounds?|yen|rupees"
_MONEY = re.compile(
    # "$20", "-$5", "$-5", "$abc", "€20": a symbol, then whatever is written next to it
    rf"(?<![\w$])(?P<sign>[-−–])?(?P<symbol>{_SYMBOL})\s?(?P<after>[^\s]*)"
    # "USD 20", "eur20"
    rf"|\b(?P<code>{_CODE})\s*(?P<code_number>[-−–]?\d[^\s]*)"
    # "20 dollars", "20 euros", "20 USD", "20€" (a symbol after the number only when it touches it, so the
    # order number in "order 1004 $20" is not read as money)
    rf"|(?<![\w.,])(?P<number>[-−–]?\d[\d.,]*)(?:\s*(?P<unit>{_CODE}|{_WORD})(?![a-z])|(?P<symbol_after>[$€£¥₹]))",
    re.IGNORECASE,
)
_TRAILING_PUNCTUATION = ",.;:!?)]"
_PLAIN = re.compile(r"(?P<whole>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<cents>\d+))?")
_DECIMAL_COMMA = re.compile(r"(?P<whole>\d+),(?P<cents>\d{1,2})")


@dataclass(frozen=True)
class Money:
    """An amount the words stated, and where it was written (so it can be left out of the reason)."""

    written: str
    span: tuple[int, int]
    currency: str
    number: str


@dataclass(frozen=True)
class AmountProblem:
    """Why the stated amount cannot be used; ``message`` says what to write instead."""

    message: str


def find_money(text: str) -> list[Money]:
    """Every amount with a currency in ``text``, readable or not."""
    found = []
    for match in _MONEY.finditer(text):
        if match.group("symbol"):
            after = match.group("after").rstrip(_TRAILING_PUNCTUATION)
            number = (match.group("sign") or "") + after
            currency = _CURRENCIES[match.group("symbol").lower()]
            end = match.start("after") + len(after)
        elif match.group("code"):
            number = match.group("code_number").rstrip(_TRAILING_PUNCTUATION)
            currency = _CURRENCIES[match.group("code").lower()]
            end = match.start("code_number") + len(number)
        else:
            number = match.group("number").rstrip(_TRAILING_PUNCTUATION)
            currency = _CURRENCIES[(match.group("unit") or match.group("symbol_after")).lower()]
            end = match.end()
        start = match.start()
        found.append(Money(text[start:end].strip(), (start, end), currency, number))
    return found


def read_amount(money: Money, example: str) -> Decimal | AmountProblem:
    """The amount in dollars, or why it cannot be refunded; ``example`` shows how to say it instead."""
    written = f"“{money.written}”"
    if money.currency != SHOP_CURRENCY:
        return AmountProblem(
            f"I can only refund in US dollars (the shop takes {SHOP_CURRENCY}), and {written} is in "
            f"{money.currency}; say the amount in dollars, like {example}"
        )
    number = money.number.replace("−", "-").replace("–", "-")
    negative = number.startswith("-")
    digits = number.lstrip("+-")
    match = _PLAIN.fullmatch(digits) or _DECIMAL_COMMA.fullmatch(digits)
    if match is None:
        return AmountProblem(f"I couldn't read {written} as an amount; say it like {example}")
    cents = match.group("cents") or ""
    if negative:
        return AmountProblem(f"{written} is a negative amount; a refund is a positive amount, like {example}")
    if len(cents) > 2:
        return AmountProblem(f"{written} has more than two decimals; say dollars and cents, like {example}")
    amount = Decimal(f"{match.group('whole').replace(',', '')}.{cents or '0'}")
    if amount == 0:
        return AmountProblem(f"{written} is nothing to refund; say how much, like {example}")
    return amount
