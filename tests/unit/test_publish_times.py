"""Times people write, read in the team's time zone with a fixed clock (DST edges included), told back exactly;
publishing windows; and what the content agent refuses before anyone is asked to approve."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from agents.dates import UnreadableTime, describe, read_time
from agents.offline.content import plan
from agents.publishing_calendar import PublishingCalendar, read_context
from bot.settings import Settings
from connectors.actions import CmsPublish
from policies.windows import PublishingWindow, is_open, next_opening

BERLIN = ZoneInfo("Europe/Berlin")
NEW_YORK = ZoneInfo("America/New_York")
NOW = datetime(2026, 11, 26, 22, 0, tzinfo=UTC)  # Thu 26 Nov 2026, 23:00 in Berlin


@pytest.mark.parametrize(
    ("words", "told"),
    [
        ("next Monday 9am", "Mon 30 Nov 2026 09:00 Europe/Berlin (08:00 UTC)"),
        ("tomorrow 14:00", "Fri 27 Nov 2026 14:00 Europe/Berlin (13:00 UTC)"),
        ("on Dec 3 at 9", "Thu 3 Dec 2026 09:00 Europe/Berlin (08:00 UTC)"),
        ("2026-12-01 09:00", "Tue 1 Dec 2026 09:00 Europe/Berlin (08:00 UTC)"),
        ("2026-12-01T09:00:00Z", "Tue 1 Dec 2026 10:00 Europe/Berlin (09:00 UTC)"),  # a zone of its own
        ("in 2 hours", "Fri 27 Nov 2026 01:00 Europe/Berlin (00:00 UTC)"),
        ("Tuesday 10:30", "Tue 1 Dec 2026 10:30 Europe/Berlin (09:30 UTC)"),
    ],
)
def test_words_are_read_in_the_team_zone_and_told_exactly(words: str, told: str) -> None:
    assert describe(read_time(words, BERLIN, NOW), BERLIN) == told


def test_the_clocks_going_forward_and_back() -> None:
    before_spring = datetime(2026, 3, 28, 11, 0, tzinfo=UTC)  # Sat, 12:00 CET
    assert describe(read_time("tomorrow 9am", BERLIN, before_spring), BERLIN) == (
        "Sun 29 Mar 2026 09:00 Europe/Berlin (07:00 UTC)"  # summer time by then
    )
    with pytest.raises(UnreadableTime, match="02:30 does not exist on Sun 29 Mar 2026 in Europe/Berlin"):
        read_time("2026-03-29 02:30", BERLIN, before_spring)
    # Passed twice when the clocks go back: the first of the two, and the UTC time says which.
    twice = read_time("2026-10-25 02:30", BERLIN, before_spring)
    assert describe(twice, BERLIN) == "Sun 25 Oct 2026 02:30 Europe/Berlin (00:30 UTC)"
    assert describe(read_time("2026-11-01 01:30", NEW_YORK, before_spring), NEW_YORK) == (
        "Sun 1 Nov 2026 01:30 America/New_York (05:30 UTC)"
    )


def test_utc_is_told_once_and_another_utc_day_is_named() -> None:
    utc = ZoneInfo("UTC")
    assert describe(datetime(2026, 12, 1, 9, 0, tzinfo=UTC), utc) == "Tue 1 Dec 2026 09:00 UTC"
    auckland = ZoneInfo("Pacific/Auckland")
    assert describe(datetime(2026, 12, 1, 20, 0, tzinfo=UTC), auckland) == (
        "Wed 2 Dec 2026 09:00 Pacific/Auckland (20:00 UTC on Tue 1 Dec 2026)"
    )


@pytest.mark.parametrize("words", ["friday", "9", "soon", "", "whenever you like", "x" * 200, "at 25"])
def test_what_is_not_a_day_and_time_is_refused_saying_what_is_accepted(words: str) -> None:
    with pytest.raises(UnreadableTime) as refused:
        read_time(words, BERLIN, NOW)
    assert "`next Monday 9am`, `tomorrow 14:00`" in str(refused.value) and "(Europe/Berlin)" in str(
        refused.value
    )


@settings(max_examples=300, deadline=None)
@given(st.text(max_size=60))
def test_garbage_gets_a_time_or_a_clear_refusal_never_a_traceback(words: str) -> None:
    try:
        moment = read_time(words, BERLIN, NOW)
    except UnreadableTime as exc:
        assert str(exc)
    else:
        assert moment.tzinfo is not None
    reply = plan(f"schedule post spring-lookbook for {words}", _context(), {"cms_publish"})
    assert reply is None or reply.text  # None: not a schedule at all, and the planner answers with its help


def _context(windows: tuple[PublishingWindow, ...] = ()) -> str:
    return PublishingCalendar(BERLIN, windows, lambda: NOW).context_line()


def test_the_grammar_says_what_it_understood_and_reads_the_zone_from_the_context() -> None:
    assert read_context(_context()) == (BERLIN, NOW.astimezone(BERLIN))
    reply = plan("schedule post spring-lookbook for next Monday 9am", _context(), {"cms_publish"})
    assert reply is not None
    assert reply.text == "Schedule spring-lookbook to go out Mon 30 Nov 2026 09:00 Europe/Berlin (08:00 UTC)."
    assert [c.input for c in reply.tool_calls] == [
        {"slug": "spring-lookbook", "publish_at": "2026-11-30T09:00:00+01:00"}
    ]
    at = plan("publish spring-lookbook at tomorrow 14:00", _context(), {"cms_publish"})
    assert at is not None and at.tool_calls[0].input["publish_at"] == "2026-11-27T14:00:00+01:00"
    unreadable = plan("schedule post spring-lookbook for someday", _context(), {"cms_publish"})
    assert unreadable is not None and unreadable.tool_calls == []
    assert unreadable.text.startswith("I didn't schedule spring-lookbook: I can't read “someday”")


def test_windows_parse_contain_and_open_next() -> None:
    tuesday, weekdays = (
        PublishingWindow.parse("tue 09:00-12:00"),
        PublishingWindow.parse("mon-fri 14:00-24:00"),
    )
    assert (str(tuesday), str(weekdays)) == ("tue 09:00-12:00", "mon-fri 14:00-24:00")
    assert str(PublishingWindow.parse("SAT, sun 10:00 - 11:00")) == "sat-sun 10:00-11:00"
    tue_10 = datetime(2026, 12, 1, 10, 0, tzinfo=BERLIN)
    assert tuesday.contains(tue_10) and not tuesday.contains(tue_10.replace(hour=12))
    assert weekdays.contains(tue_10.replace(hour=23, minute=59)) and not weekdays.contains(tue_10)
    assert is_open((), tue_10) and not is_open((tuesday,), tue_10.replace(day=2))
    assert next_opening((tuesday,), tue_10) == datetime(2026, 12, 8, 9, 0, tzinfo=BERLIN)
    assert next_opening((tuesday, weekdays), tue_10) == datetime(2026, 12, 1, 14, 0, tzinfo=BERLIN)


@pytest.mark.parametrize(
    ("window", "says"),
    [
        ("tuesday 9-12", "is not a publishing window; write days and hours"),
        ("xyz 09:00-10:00", "'xyz' is not a day"),
        ("fri-mon 09:00-10:00", "runs backwards"),
        ("tue 12:00-09:00", "ends before it starts"),
        ("tue 09:00-25:00", "25:00 is not a time of day"),
    ],
)
def test_a_wrong_window_says_what_is_wrong(window: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        PublishingWindow.parse(window)


def at(text: str) -> CmsPublish:
    return CmsPublish(slug="spring-lookbook", publish_at=datetime.fromisoformat(text))


def test_the_calendar_refuses_the_past_and_times_outside_the_windows() -> None:
    windows = (PublishingWindow.parse("tue 09:00-12:00"), PublishingWindow.parse("fri 09:00-12:00"))
    calendar = PublishingCalendar(BERLIN, windows, lambda: NOW)
    assert calendar.refusal(at("2026-11-26T09:00:00+01:00")) == (
        "Thu 26 Nov 2026 09:00 Europe/Berlin (08:00 UTC) is in the past (it is now Thu 26 Nov 2026 23:00 "
        "Europe/Berlin (22:00 UTC)); give a later time"
    )
    assert calendar.refusal(at("2026-11-30T09:00:00+01:00")) == (
        "Mon 30 Nov 2026 09:00 Europe/Berlin (08:00 UTC) is outside the publishing windows tue 09:00-12:00, "
        "fri 09:00-12:00 (Europe/Berlin); the next one opens Tue 1 Dec 2026 09:00 Europe/Berlin (08:00 UTC)"
    )
    assert calendar.refusal(CmsPublish(slug="spring-lookbook")) == (
        "now is outside the publishing windows tue 09:00-12:00, fri 09:00-12:00 (Europe/Berlin); the next one "
        "opens Fri 27 Nov 2026 09:00 Europe/Berlin (08:00 UTC)"
    )
    assert calendar.refusal(at("2026-11-27T11:59:00+01:00")) is None
    assert PublishingCalendar(BERLIN, (), lambda: NOW).refusal(CmsPublish(slug="spring-lookbook")) is None


def test_an_unknown_time_zone_is_refused_when_the_settings_are_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("AIOS_TIMEZONE", raising=False)
    assert Settings(_env_file=None).zone == ZoneInfo("UTC")
    assert Settings(_env_file=None, AIOS_TIMEZONE="Europe/Berlin").zone == BERLIN
    for wrong in ("Mars/Olympus", "../../etc/passwd", ""):
        with pytest.raises(ValidationError, match="is not a time zone this system knows; use an IANA name"):
            Settings(_env_file=None, AIOS_TIMEZONE=wrong)


def test_a_duration_from_now_is_counted_in_utc_across_a_clock_change() -> None:
    before_autumn = datetime(2026, 10, 24, 23, 30, tzinfo=UTC)  # Sun 25 Oct, 01:30 summer time in Berlin
    # Two hours on is 01:30 UTC, the second 02:30 of the night, not the wall clock's 03:30 (three hours on).
    assert read_time("in 2 hours", BERLIN, before_autumn) == datetime(2026, 10, 25, 1, 30, tzinfo=UTC)
    assert read_time("in 90 minutes", BERLIN, before_autumn) == datetime(2026, 10, 25, 1, 0, tzinfo=UTC)
    before_spring = datetime(2026, 3, 29, 0, 30, tzinfo=UTC)  # Sun 29 Mar, 01:30 winter time
    assert read_time("in 1 hour", BERLIN, before_spring) == datetime(2026, 3, 29, 1, 30, tzinfo=UTC)


def test_a_weekday_that_is_today_means_today_while_its_time_is_ahead() -> None:
    monday_morning = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)  # Mon 30 Nov, 07:00 in Berlin
    assert describe(read_time("monday 9am", BERLIN, monday_morning), BERLIN) == (
        "Mon 30 Nov 2026 09:00 Europe/Berlin (08:00 UTC)"
    )
    assert describe(read_time("Mon 9:00", BERLIN, monday_morning), BERLIN).startswith("Mon 30 Nov 2026")
    # Its time already passed today, or "next" said: a week on.
    assert describe(read_time("monday 6am", BERLIN, monday_morning), BERLIN).startswith("Mon 7 Dec 2026")
    assert describe(read_time("next monday 9am", BERLIN, monday_morning), BERLIN).startswith("Mon 7 Dec 2026")
