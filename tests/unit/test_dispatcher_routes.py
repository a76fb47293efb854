"""Which agent the dispatcher's grammar hands a request to: "plan" reaches the calendar only with a calendar's
words; any other plan goes where its words lead."""

from __future__ import annotations

import pytest

from agents.dispatcher import route_name

AGENTS = ("scheduling", "returns", "content")


@pytest.mark.parametrize(
    ("text", "agent"),
    [
        ("plan December: two posts a week about winter care, Tuesdays and Fridays", "scheduling"),
        ("plan next month: one post a week about pricing, on Mondays", "scheduling"),
        ("plan 2026-12, 4 posts about gift guides", "scheduling"),
        ("plan May: 3 articles about gardening", "scheduling"),
        ("please plan our content calendar", "scheduling"),
        ("what is on the content calendar", "scheduling"),
        ("plan a refund of $40 for order 1002", "returns"),
        ("plan a replacement for the broken mug", "returns"),
        ("plan to draft something nice", "content"),
        ("plan what we may do next", None),
    ],
)
def test_plan_goes_to_the_calendar_only_with_calendar_words(text: str, agent: str | None) -> None:
    assert route_name(text, AGENTS) == agent
