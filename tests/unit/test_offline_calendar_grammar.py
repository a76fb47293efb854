"""The offline grammar for a month's content calendar: the days, times and zone it plans, how many, what it avoids,
and one clear answer (never a traceback) for whatever else it is given."""

from __future__ import annotations

from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from agents.llm import LLMReply
from agents.offline import calendar
from agents.offline.planner import OfflinePlanner
from agents.publishing_calendar import PublishingCalendar
from agents.scheduling import TAKEN_LINE, USED_LINE, used_titles
from policies.windows import PublishingWindow

BERLIN = ZoneInfo("Europe/Berlin")
OFFERED = {"cms_create_draft"}
WINDOWS = (PublishingWindow.parse("tue 09:00-12:00"), PublishingWindow.parse("fri 10:00-12:00"))


def context(
    now: datetime, windows: tuple[PublishingWindow, ...] = WINDOWS, used: tuple[str, ...] = ()
) -> str:
    line = PublishingCalendar(BERLIN, windows, lambda: now).context_line()
    return "\n".join([line, *(f'{USED_LINE}"{title}"' for title in used)])


def slots(reply: LLMReply | None) -> list[datetime]:
    assert reply is not None
    return [datetime.fromisoformat(str(call.input["planned_for"])) for call in reply.tool_calls]


def test_two_a_week_on_the_days_asked_at_each_windows_opening_in_the_team_zone() -> None:
    # March 2027 in Berlin: the clocks go forward on Sunday 28 March.
    now = datetime(2027, 2, 20, 12, 0, tzinfo=UTC)
    reply = calendar.plan(
        "plan March: two posts a week about winter care, Tuesdays and Fridays", context(now), OFFERED
    )
    planned = slots(reply)
    local = [moment.astimezone(BERLIN) for moment in planned]
    assert [(t.day, t.hour) for t in local] == [
        (2, 9), (5, 10), (9, 9), (12, 10), (16, 9), (19, 10), (23, 9), (26, 10), (30, 9),
    ]  # fmt: skip
    assert planned[-1].astimezone(UTC).hour == 7  # 09:00 summer time, after the change
    assert planned[0].astimezone(UTC).hour == 8
    assert reply is not None and reply.text.startswith(
        "Understood: March 2027, 2 posts a week about winter care, on Tuesdays at 09:00 and Fridays at 10:00 "
        "Europe/Berlin (the publishing windows' opening)."
    )


def test_never_more_than_asked_and_never_a_day_already_past() -> None:
    now = datetime(2026, 12, 9, 12, 0, tzinfo=UTC)  # a Wednesday: Tue 1, Fri 4 and Tue 8 December are past
    one_a_week = slots(calendar.plan("plan this month: one post a week about pricing", context(now), OFFERED))
    assert [t.astimezone(BERLIN).day for t in one_a_week] == [11, 15, 22, 29]
    total = slots(
        calendar.plan("plan December: 3 posts about gift guides, on fridays", context(now), OFFERED)
    )
    assert [t.astimezone(BERLIN).day for t in total] == [11, 18, 25]
    reply = calendar.plan(
        "plan December: 2 posts a week about gift guides, tue and fri", context(now), OFFERED
    )
    assert reply is not None and "Skipped 3 days already past." in reply.text
    assert all(t > now for t in slots(reply))


def test_days_without_a_window_are_refused_with_the_days_that_have_one() -> None:
    now = datetime(2026, 11, 20, tzinfo=UTC)
    reply = calendar.plan("plan December: two posts a week about pricing on Mondays", context(now), OFFERED)
    assert reply is not None and reply.tool_calls == []
    assert reply.text == (
        "I didn't plan anything: Mondays have no publishing window (tue 09:00-12:00, fri 10:00-12:00, "
        "Europe/Berlin); pick days among tue, fri, or add a window to the policy file."
    )


def test_titles_used_before_are_passed_over() -> None:
    now = datetime(2026, 11, 20, tzinfo=UTC)
    used = ("Winter care on a budget", "Five winter care mistakes we see every year")
    reply = calendar.plan(
        "plan December: two posts a week about winter care, Tuesdays and Fridays",
        context(now, used=used),
        OFFERED,
    )
    assert reply is not None
    titles = [str(call.input["title"]) for call in reply.tool_calls]
    assert not set(titles) & set(used)
    assert len(set(titles)) == len(titles) == 9
    assert "Passed over 2 titles used before." in reply.text
    assert all(str(call.input["body"]).startswith("Angle: ") for call in reply.tool_calls)


def test_a_post_memory_or_its_summary_gives_its_quoted_titles() -> None:
    fact = (
        "2026-09-01 09:00 UTC: drafted the post a (cms.create_draft A-3, execution E-3, run R-3; asked by U1, "
        'allowed). Title given by the requester/model (unverified): "Winter \\"care\\" on a budget"'
    )
    assert used_titles(fact) == ['Winter "care" on a budget']
    summary = f"Summary of 2 post memories about post:a: {fact} | 2026-09-02: published the post a (…)."
    assert used_titles(summary) == ['Winter "care" on a budget']
    assert used_titles("Ten looks for spring did well") == ["Ten looks for spring did well"]


@pytest.mark.parametrize(
    ("text", "answer"),
    [
        ("plan it", "say how many posts, and on which days"),
        ("plan December: two posts a week", "say what the posts are about"),
        ("plan 2026-13: two posts about x", "“2026-13” is not a month"),
        ("plan March 2020: two posts a week about x", "March 2020 is over"),
        ("plan December: 99 posts about x", "99 posts is not a number I can plan"),
        ("plan December: 100000000000000000000 posts a week about x, Tuesdays", "is not a number I can plan"),
        (
            "plan 9999-12: two posts a week about x",
            "“9999-12” is not a month I can plan (years 1970 to 2999)",
        ),
        ("plan December 9999: two posts about x", "“December 9999” is not a month I can plan"),
        ("plan 0000-05: two posts about x", "“0000-05” is not a month I can plan"),
        ("plan Decembre: two posts a week about x", "I can't read “Decembre” as a month"),
        ("plan December: a few posts about x", "say how many posts as a number"),
        ("plan December: several posts about x on Fridays", "say how many posts as a number"),
        (
            "plan December: one post a week about x at 3pm",
            "15:00 is outside the publishing windows on Tuesdays",
        ),
        ("plan December: one post a week about x at 25:00", "“at 25:00” is not a time of day"),
    ],
)
def test_a_request_it_cannot_read_proposes_nothing_and_says_what_to_write(text: str, answer: str) -> None:
    reply = calendar.plan(text, context(datetime(2026, 11, 20, tzinfo=UTC)), OFFERED)
    assert reply is not None and reply.tool_calls == []
    assert reply.text.startswith("I didn't plan anything: ") and answer in reply.text


def test_other_requests_are_left_to_other_grammars() -> None:
    system = context(datetime(2026, 11, 20, tzinfo=UTC))
    assert calendar.plan('draft a post titled "Plan your winter"', system, OFFERED) is None
    assert calendar.plan("plan December: two posts a week about x", system, {"cms_publish"}) is None


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=120), st.sampled_from(["plan ", "Plan december ", "content calendar "]))
def test_any_words_get_a_clear_answer(words: str, start: str) -> None:
    reply = calendar.plan(start + words, context(datetime(2026, 11, 20, tzinfo=UTC)), OFFERED)
    assert reply is not None
    assert reply.text.startswith(("Understood: ", "I didn't plan anything: "))
    assert len(reply.tool_calls) <= 31


async def test_the_offline_planner_plans_a_calendar_for_the_scheduling_agent() -> None:
    from agents.llm import CallContext, Message, ToolSpec

    reply = await OfflinePlanner().complete(
        role="agent",
        system=context(datetime(2026, 11, 20, tzinfo=UTC)),
        messages=[Message("user", "plan December: one post a week about pricing, Fridays")],
        tools=[ToolSpec("cms_create_draft", "", {})],
        call=CallContext(intent_id=1, agent="scheduling", requester="U1", channel="C1", team_id="T1"),
    )
    assert [call.id for call in reply.tool_calls] == [f"offline_{i}" for i in range(1, 5)]


@pytest.mark.parametrize(
    ("text", "month"),
    [
        ("plan Sept: one post a week about pricing", date(2027, 9, 1)),
        ("plan 12/2026: one post a week about pricing", date(2026, 12, 1)),
        ("plan dec 2027: one post a week about pricing", date(2027, 12, 1)),
        ("plan a content calendar for January: one post a week about pricing", date(2027, 1, 1)),
        ("plan next month: one post a week about pricing", date(2026, 12, 1)),
        ("plan one post a week about pricing in 2027-02", date(2027, 2, 1)),
    ],
)
def test_the_month_is_read_as_the_calendar_command_reads_it(text: str, month: date) -> None:
    planned = slots(calendar.plan(text, context(datetime(2026, 11, 20, tzinfo=UTC)), OFFERED))
    assert planned and {(t.astimezone(BERLIN).year, t.astimezone(BERLIN).month) for t in planned} == {
        (month.year, month.month)
    }


def test_months_and_days_inside_the_topic_are_the_topic() -> None:
    system = context(datetime(2026, 11, 20, tzinfo=UTC))
    reply = calendar.plan(
        "plan December: one post a week about what you may need, on Fridays", system, OFFERED
    )
    assert reply is not None and reply.text.startswith(
        "Understood: December 2026, 1 post a week about what you may need, on Fridays at 10:00"
    )
    assert {t.astimezone(BERLIN).month for t in slots(reply)} == {12}
    reply = calendar.plan(
        "plan December: two posts a week about sun protection, on Tuesdays", system, OFFERED
    )
    assert reply is not None and "about sun protection, on Tuesdays at 09:00" in reply.text
    assert {t.astimezone(BERLIN).weekday() for t in slots(reply)} == {1}
    reply = calendar.plan("plan December: one post a week about working at home, Fridays", system, OFFERED)
    assert reply is not None and "about working at home, on Fridays" in reply.text


def test_weekly_counts_more_per_week_than_days_and_a_time_asked() -> None:
    system = context(datetime(2026, 11, 20, tzinfo=UTC))
    weekly = calendar.plan("plan December: 2 posts weekly about pricing", system, OFFERED)
    assert weekly is not None and "2 posts a week" in weekly.text and len(slots(weekly)) == 9
    crowded = calendar.plan("plan December: three posts a week on Tuesdays about pricing", system, OFFERED)
    assert crowded is not None and "Tuesdays give at most 1 a week, so I planned 1 a week." in crowded.text
    assert [t.astimezone(BERLIN).day for t in slots(crowded)] == [1, 8, 15, 22, 29]
    timed = calendar.plan("plan December: one post a week about pricing, Tuesdays at 11am", system, OFFERED)
    assert timed is not None and "on Tuesdays at 11:00 Europe/Berlin." in timed.text
    assert {t.astimezone(BERLIN).hour for t in slots(timed)} == {11}


def test_a_window_opening_in_the_clock_change_gap_is_moved_past_it_and_said() -> None:
    new_york = ZoneInfo("America/New_York")  # clocks go forward on Sunday 14 March 2027, 02:00 → 03:00
    windows = (PublishingWindow.parse("sun 02:30-04:00"),)
    line = PublishingCalendar(new_york, windows, lambda: datetime(2027, 2, 20, tzinfo=UTC)).context_line()
    reply = calendar.plan("plan March: one post a week about pricing", line, OFFERED)
    local = [t.astimezone(new_york) for t in slots(reply)]
    assert [(t.day, t.hour, t.minute) for t in local] == [(7, 2, 30), (14, 3, 30), (21, 2, 30), (28, 2, 30)]
    assert reply is not None and (
        "02:30 does not exist on Sun 14 Mar in America/New_York (the clocks go forward): planned at 03:30 instead."
        in reply.text
    )
    short = (PublishingWindow.parse("sun 02:00-03:00"),)
    line = PublishingCalendar(new_york, short, lambda: datetime(2027, 2, 20, tzinfo=UTC)).context_line()
    reply = calendar.plan("plan March: one post a week about pricing", line, OFFERED)
    assert [t.astimezone(new_york).day for t in slots(reply)] == [7, 21, 28]
    assert reply is not None and "that day is left out." in reply.text


_MONTH_WORDS = st.sampled_from(["December", "next month", "2027-01", "1/2027", "Sept", "may", "March 2027"])
_DAY_WORDS = st.sampled_from(["", ", Tuesdays", ", on Fridays", ", Tuesdays and Fridays", " on tue/fri"])
_COUNTS = st.sampled_from(["one post a week", "2 posts weekly", "three posts a week", "4 posts", "1 article"])
_TOPICS = st.sampled_from(["sun protection", "what you may need", "working at home", "march madness"])


@settings(max_examples=200, deadline=None)
@given(_MONTH_WORDS, _COUNTS, _TOPICS, _DAY_WORDS)
def test_what_is_said_back_is_what_is_planned(month: str, count: str, topic: str, days: str) -> None:
    now = datetime(2026, 11, 20, tzinfo=UTC)
    reply = calendar.plan(f"plan {month}: {count} about {topic}{days}", context(now), OFFERED)
    assert reply is not None
    request = calendar.read_request(f"plan {month}: {count} about {topic}{days}", now.date())
    assert request.topic == topic
    said = reply.text.split(" planned draft", 1)[0]
    assert said.startswith(f"Understood: {request.month:%B %Y}, ") and f" about {topic}, on " in said
    planned = [t.astimezone(BERLIN) for t in slots(reply)]
    assert all((t.year, t.month) == (request.month.year, request.month.month) for t in planned)
    assert all(f"{t:%a} {t.day} {t:%b} {t.year} {t:%H:%M}" in reply.text for t in planned)
    assert len(reply.text.splitlines()) == len(planned) + 1
    weeks = [t.isocalendar()[:2] for t in planned]
    if request.per_week is not None:
        assert all(weeks.count(week) <= request.per_week for week in weeks)
    else:
        assert len(planned) <= (request.total or 0)


def test_times_other_planned_drafts_hold_are_skipped_and_count_towards_the_week() -> None:
    now = datetime(2026, 11, 20, tzinfo=UTC)
    held = [datetime(2026, 12, 1, 9, 0, tzinfo=BERLIN), datetime(2026, 12, 8, 9, 0, tzinfo=BERLIN)]
    system = context(now) + "".join(f'\n{TAKEN_LINE}"{moment.isoformat()}"' for moment in held)
    reply = calendar.plan(
        "plan December: two posts a week about pricing, Tuesdays and Fridays", system, OFFERED
    )
    planned = [t.astimezone(BERLIN) for t in slots(reply)]
    assert not set(planned) & set(held)
    assert [t.day for t in planned] == [4, 11, 15, 18, 22, 25, 29]  # two a week with the two held ones
    assert reply is not None and (
        "2 of the Tuesdays already have a post planned, counted in the posts a week." in reply.text
    )
