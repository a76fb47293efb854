"""The months `/aios calendar` reads: words, numbers and relative months; anything else is one sentence."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bot.content_calendar import UnreadableMonth, read_month

TODAY = date(2026, 11, 26)


@pytest.mark.parametrize(
    ("words", "month"),
    [
        ("", date(2026, 11, 1)),
        ("this month", date(2026, 11, 1)),
        ("Next  Month", date(2026, 12, 1)),
        ("last month", date(2026, 10, 1)),
        ("december", date(2026, 12, 1)),
        ("Dec", date(2026, 12, 1)),
        ("march", date(2027, 3, 1)),  # the coming March
        ("november", date(2026, 11, 1)),
        ("sept 2025", date(2025, 9, 1)),
        ("2026-12", date(2026, 12, 1)),
        ("2027-1", date(2027, 1, 1)),
        ("12/2026", date(2026, 12, 1)),
        ("sep", date(2027, 9, 1)),
    ],
)
def test_month_words(words: str, month: date) -> None:
    assert read_month(words, TODAY) == month


def test_next_month_in_december_is_january() -> None:
    assert read_month("next month", date(2026, 12, 31)) == date(2027, 1, 1)


@pytest.mark.parametrize(
    "words",
    [
        "2026-13",
        "9999-12",
        "0000-05",
        "december 9999",
        "13/2026",
        "de",
        "junuary",
        "next week",
        "december 26",
    ],
)
def test_other_words_are_one_sentence(words: str) -> None:
    with pytest.raises(UnreadableMonth, match=r"^I can't read “.*” as a month; try `/aios calendar`"):
        read_month(words, TODAY)


@given(st.text(max_size=60))
def test_any_words_are_a_month_or_one_sentence(words: str) -> None:
    try:
        month = read_month(words, TODAY)
    except UnreadableMonth:
        return
    assert month.day == 1 and 1970 <= month.year < 3000
