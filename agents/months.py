"""Months in words, as `/aios calendar` and `plan …` read them: one reader, so both mean the same month by the
same words, and one step from a month to the next.

Accepted: a month's name or its first three letters or more (``december``, ``dec``, ``sept``), with a year or not
(without one it is the coming such month), ``2026-12``, ``12/2026``, ``this month``, ``next month`` and ``last
month``. Years are bounded, so the month after any month read is a date too.
"""

from __future__ import annotations

import re
from datetime import date

NAMES = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
YEARS = range(1970, 3000)
_ISO = re.compile(r"^(\d{1,4})-(\d{1,2})$")
_SLASHED = re.compile(r"^(\d{1,2})/(\d{1,4})$")
_NAMED = re.compile(r"^([a-z]{3,9})\.?(?:\s+(\d{1,4}))?$")
_RELATIVE = re.compile(r"^(this|next|last)\s+month$")


class UnreadableMonth(ValueError):
    """The words are not a month this can read."""


def read_month(text: str, today: date) -> date:
    """The first day of the month ``text`` names, all of ``text`` being the month. Raises UnreadableMonth."""
    words = " ".join(text.lower().split())
    this = today.replace(day=1)
    if (relative := _RELATIVE.match(words)) is not None:
        return shift(this, {"this": 0, "next": 1, "last": -1}[relative.group(1)])
    numbered = _ISO.match(words) or _SLASHED.match(words)
    if numbered is not None:
        year, number = (
            (numbered.group(1), numbered.group(2))
            if numbered.re is _ISO
            else (numbered.group(2), numbered.group(1))
        )
        return _first(int(year), int(number), text)
    if (named := _NAMED.match(words)) is not None and (number := month_number(named.group(1))) is not None:
        if named.group(2) is not None:
            return _first(int(named.group(2)), number, text)
        chosen = date(today.year, number, 1)
        return chosen if chosen >= this else shift(chosen, 12)
    raise UnreadableMonth(f"I can't read “{text.strip()[:40]}” as a month")


def month_number(word: str) -> int | None:
    """1 to 12 for a month's name or its first three letters or more; None for any other word."""
    lower = word.lower()
    if len(lower) < 3:
        return None
    return next((i for i, name in enumerate(NAMES, 1) if name.startswith(lower)), None)


def shift(first: date, months: int) -> date:
    """The first day of the month ``months`` after (or before) the month of ``first``."""
    index = first.year * 12 + first.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _first(year: int, number: int, text: str) -> date:
    if not 1 <= number <= 12 or year not in YEARS:
        raise UnreadableMonth(
            f"“{text.strip()[:40]}” is not a month I can plan (years {YEARS.start} to {YEARS.stop - 1})"
        )
    return date(year, number, 1)
