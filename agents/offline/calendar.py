"""Offline grammar for a month's content calendar (tool ``cms_create_draft`` with ``planned_for``).

``plan December: two posts a week about winter care, Tuesdays and Fridays`` and its variants (``plan next
month: 1 post per week on Mondays about pricing``, ``plan 2026-12, 3 posts about gift guides on tue/fri``): the
slots fall on the days asked, at the opening of that day's publishing window (09:00 without windows), in the
team's zone, on days still to come, never more than asked. Each slot gets a working title and an angle that no
``Used before`` line of the context names. What was understood is said back; what cannot be read proposes
nothing and says how to write it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from agents import months
from agents.dates import UnreadableTime, describe, place
from agents.llm import LLMReply, ToolCall
from agents.months import UnreadableMonth, month_number
from agents.offline.grammar import Grammar
from agents.publishing_calendar import read_context
from agents.scheduling import ANGLE_PREFIX, taken_lines, used_lines
from connectors.actions import slugify
from policies.windows import DAYS, PublishingWindow, is_open

MAX_LENGTH = 300
DEFAULT_TIME = time(9, 0)
_REQUEST = re.compile(r"^\W*(?:please\s+)?plan\b", re.IGNORECASE)
_CALENDAR = re.compile(r"\bcontent\s+calendar\b", re.IGNORECASE)
_HEADER = re.compile(r"^\W*(?:please\s+)?plan\s+([^:]{1,40}):", re.IGNORECASE)
_FILLER = frozenset({"a", "an", "the", "our", "my", "content", "calendar", "for", "posts", "schedule"})
_ISO_MONTH = re.compile(r"\b\d{1,4}-\d{1,2}\b|\b\d{1,2}/\d{1,4}\b")
_RELATIVE_MONTH = re.compile(r"\b(?:this|next)\s+month\b", re.IGNORECASE)
_MONTH_WORD = re.compile(r"\b([a-z]{3,9})\.?(?:\s+(\d{1,4})\b)?", re.IGNORECASE)
_NUMBERS = {"a": 1, "an": 1, "one": 1, "two": 2, "three": 3, "four": 4, "five": 5, "six": 6, "seven": 7}
_VAGUE = re.compile(
    r"\b(?:a\s+few|few|several|some|a\s+couple\s+of|couple\s+of|many|a\s+lot\s+of|lots\s+of|more)\s+"
    r"(?:\w+\s+)?(?:posts?|articles?|pieces?)\b",
    re.IGNORECASE,
)
_COUNT = re.compile(
    r"\b(\d+|an?|one|two|three|four|five|six|seven)\s+(?:(?!few\b|couple\b)\w+\s+)?"
    r"(?:posts?|articles?|pieces?|slots?)"
    r"(?:\s+(?:(?:a|per|each|every)\s+(week|month)|(weekly|monthly))\b)?",
    re.IGNORECASE,
)
_WEEKLY = re.compile(r"\b(weekly|every\s+week|once\s+a\s+week)\b", re.IGNORECASE)
_DAY = re.compile(r"\b(mon|tue|wed|thu|fri|sat|sun)(?:s|days?|nesdays?|rsdays?|urdays?|sdays?)?\b", re.I)
_MONTH_START = r"(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\b"
_FULL_DAY = r"(?:mon|tues|wednes|thurs|fri|satur|sun)days?\b"
# The topic runs to punctuation, or to words that start saying when: "on Tuesdays", "at 3pm", "Fridays",
# "two a week"; "at home" or "sun protection" stay in it.
_TOPIC = re.compile(
    r"\babout\s+(.+?)(?=\s*[,.;:!?]|\s+(?:on|every|each)\s+(?:mon|tue|wed|thu|fri|sat|sun)|\s+at\s+\d"
    rf"|\s+{_FULL_DAY}|\s+(?:in|for)\s+(?:\d{{1,4}}[-/]\d|(?:this|next)\s+month|{_MONTH_START})"
    r"|\s+(?:every|each|per|a)\s+(?:week|month)\b|\s+weekly\b|\s*$)",
    re.IGNORECASE,
)
_AT = re.compile(r"\bat\s+(\d{1,2})(?::(\d{2}))?\s*(am|pm)?(?![\w:])", re.IGNORECASE)
_COMMON = frozenset({"a", "an", "and", "for", "in", "of", "on", "our", "s", "the", "to", "we", "your"})
EXAMPLE = "`plan December: two posts a week about winter care, Tuesdays and Fridays`"
# A working title and an angle for each slot, tried in order; those already used are passed over.
_IDEAS = (
    ("{Topic}: the beginner's checklist", "the five things to do first, for someone starting out"),
    ("Five {topic} mistakes we see every year", "common mistakes and the fix for each, from real questions"),
    ("{Topic} on a budget", "what is worth paying for and what is not"),
    ("{Topic}: your questions, answered", "the questions readers asked most, answered plainly"),
    ("A week-by-week {topic} plan", "a calendar readers can follow, one small task a week"),
    ("The {topic} tools we actually use", "the short list of tools and why each earns its place"),
    ("{Topic} myths, checked", "popular advice held up against what works"),
    ("The ten-minute {topic} routine", "a routine short enough to keep doing"),
    ("{Topic}: before and after", "one real example, step by step, with what changed"),
    ("What we learned about {topic} this year", "our own notes: what worked, what we would drop"),
    ("{Topic} for small spaces", "the same care scaled down to a balcony or a windowsill"),
    ("{Topic}: when to call in help", "the signs that a job needs a professional"),
)


@dataclass(frozen=True)
class CalendarRequest:
    month: date  # its first day
    per_week: int | None  # posts a week; None: ``total`` over the month
    total: int | None
    days: tuple[int, ...]  # weekdays asked (Monday 0), in the order of the week
    topic: str
    at: time | None = None  # the time asked ("at 3pm"); None: each day's window opening


class Unreadable(ValueError):
    """The request is a calendar's, but says something this cannot read; the message says what to write."""


def plan(text: str, system: str, offered: set[str]) -> LLMReply | None:
    if "cms_create_draft" not in offered or not (_REQUEST.search(text) or _CALENDAR.search(text)):
        return None
    zone, now = read_context(system)
    try:
        request = read_request(text, now.astimezone(zone).date())
        return _calendar(request, zone, now, windows_of(system), used_lines(system), taken_lines(system))
    except Unreadable as exc:
        return LLMReply(f"I didn't plan anything: {exc}.")


def read_request(text: str, today: date) -> CalendarRequest:
    """What a request asks. The month, the days, the count and the time are read outside the ``about …`` topic,
    so "about what you may need" is not May and "about sun protection" is not Sundays."""
    words = " ".join(text.split())
    if len(words) > MAX_LENGTH:
        raise Unreadable(f"that is more than {MAX_LENGTH} characters; ask like {EXAMPLE}")
    found = _TOPIC.search(words)
    subject = found.group(1).strip(" \"“”'") if found else ""
    rest = words[: found.start()] + " " + words[found.end() :] if found else words
    month, rest = _month(rest, today)
    days = tuple(sorted({DAYS.index(m.group(1).lower()) for m in _DAY.finditer(rest)}))
    per_week: int | None = None
    total: int | None = None
    if _VAGUE.search(rest):
        raise Unreadable(f"say how many posts as a number (`3 posts`, `two posts a week`); like {EXAMPLE}")
    if (count := _COUNT.search(rest)) is not None:
        number = _number(count.group(1))
        period = (count.group(2) or count.group(3) or "").lower()
        if period in ("month", "monthly"):
            total = number
        elif period:
            per_week = number
        else:
            total = number
    elif _WEEKLY.search(rest):
        per_week = 1
    if per_week is None and total is None:
        per_week = len(days) if days else None
    if per_week is None and total is None:
        raise Unreadable(f"say how many posts, and on which days; like {EXAMPLE}")
    if not subject:
        raise Unreadable(f"say what the posts are about (`about winter care`); like {EXAMPLE}")
    return CalendarRequest(month, per_week, total, days, subject[:80], _time_of(rest))


def windows_of(system: str) -> tuple[PublishingWindow, ...]:
    """The publishing windows the context line names; none when it names none."""
    match = re.search(r"publishing windows (.+?) \(([^()]+)\)\.", system)
    if match is None:
        return ()
    windows: list[PublishingWindow] = []
    for part in match.group(1).split(", "):
        try:
            windows.append(PublishingWindow.parse(part))
        except ValueError:
            continue
    return tuple(windows)


def _calendar(
    request: CalendarRequest,
    zone: ZoneInfo,
    now: datetime,
    windows: tuple[PublishingWindow, ...],
    used: list[str],
    taken: list[datetime],
) -> LLMReply:
    opening = _openings(windows)
    days = request.days or tuple(sorted(opening)) or (1, 4)
    closed = [day for day in days if windows and day not in opening]
    if closed:
        open_days = ", ".join(DAYS[d] for d in sorted(opening))
        shown = ", ".join(str(w) for w in windows)
        raise Unreadable(
            f"{_names(closed)} have no publishing window ({shown}, {zone.key}); "
            f"pick days among {open_days}, or add a window to the policy file"
        )
    at = _times(request, days, opening, windows, zone)
    moments, past, notes, held = _slots(request, days, at, windows, zone, now, taken)
    times = " and ".join(f"{_names([d])} at {at[d]:%H:%M}" for d in days)
    how_many = (
        f"{_posts(request.per_week)} a week"
        if request.per_week
        else f"{_posts(request.total or 0)} in the month"
    )
    opened = " (the publishing windows' opening)." if windows and request.at is None else "."
    understood = f"Understood: {request.month:%B %Y}, {how_many} about {request.topic}, on {times} {zone.key}"
    understood += opened
    if request.per_week is not None and request.per_week > len(days):
        understood += f" {_names(days)} give at most {len(days)} a week, so I planned {len(days)} a week."
    if past:
        understood += f" Skipped {past} day{'s' if past != 1 else ''} already past."
    if held:
        understood += f" {_held_days(held)} already {'has' if len(held) == 1 else 'have'} a post planned" + (
            ", counted in the posts a week." if request.per_week is not None else "."
        )
    understood += "".join(f" {note}" for note in notes)
    if not moments:
        return LLMReply(f"{understood} No day asked is left in {request.month:%B %Y}: nothing to plan.")
    ideas = _ideas(request.topic, used, len(moments), request.month)
    calls: list[ToolCall] = []
    lines: list[str] = []
    for moment, (title, angle) in zip(moments, ideas, strict=True):
        slug = slugify(title)
        calls.append(
            ToolCall(
                "",
                "cms_create_draft",
                {
                    "title": title,
                    "slug": slug,
                    "body": f"{ANGLE_PREFIX}{angle}\nPlanned for {describe(moment, zone)}.",
                    "planned_for": moment.isoformat(),
                },
            )
        )
        lines.append(f"• {describe(moment, zone)}: “{title}” ({angle})")
    avoided = sum(1 for title, _ in _all_ideas(request.topic, request.month) if _is_used(title, used))
    note = f" Passed over {avoided} title{'s' if avoided != 1 else ''} used before." if avoided else ""
    return LLMReply(
        f"{understood}{note} {len(calls)} planned draft{'s' if len(calls) != 1 else ''}:\n"
        + "\n".join(lines),
        calls,
    )


def _openings(windows: tuple[PublishingWindow, ...]) -> dict[int, time]:
    """Each weekday with a window, and the earliest window start on it."""
    found: dict[int, time] = {}
    for window in windows:
        for day in window.days:
            found[day] = min(found.get(day, window.start), window.start)
    return found


def _times(
    request: CalendarRequest,
    days: tuple[int, ...],
    opening: dict[int, time],
    windows: tuple[PublishingWindow, ...],
    zone: ZoneInfo,
) -> dict[int, time]:
    """Each asked day's time: the time asked when it falls in that day's windows, else the windows' opening."""
    if request.at is None:
        return {day: opening.get(day, DEFAULT_TIME) for day in days}
    at = request.at
    outside = [
        d for d in days if windows and not is_open(windows, datetime.combine(date(2024, 1, 1 + d), at))
    ]
    if outside:
        shown = ", ".join(str(w) for w in windows)
        raise Unreadable(
            f"{at:%H:%M} is outside the publishing windows on {_names(outside)} ({shown}, {zone.key}); "
            "ask for a time inside them, or leave the time out to plan at their opening"
        )
    return dict.fromkeys(days, at)


def _slots(
    request: CalendarRequest,
    days: tuple[int, ...],
    at: dict[int, time],
    windows: tuple[PublishingWindow, ...],
    zone: ZoneInfo,
    now: datetime,
    taken: list[datetime],
) -> tuple[list[datetime], int, list[str], list[datetime]]:
    """The slots' moments, earliest first; how many asked days were already past; what was said about days
    whose time the clocks skip (moved past the gap while still in the window, or left out); and the asked
    moments other planned drafts hold. Those are not planned again, and every post the team has planned in a
    week counts towards its posts a week."""
    first = request.month
    following = months.shift(first, 1)
    moments: list[datetime] = []
    notes: list[str] = []
    held: list[datetime] = []
    past = 0
    week_count: dict[tuple[int, int], int] = {}
    for moment in taken:
        week = moment.astimezone(zone).isocalendar()[:2]
        week_count[week] = week_count.get(week, 0) + 1
    day = first
    while day < following:
        if day.weekday() in days:
            week = day.isocalendar()[:2]
            wall = datetime.combine(day, at[day.weekday()])
            try:
                moment = place(wall, zone)
            except UnreadableTime:
                moment = wall.replace(tzinfo=zone).astimezone(UTC).astimezone(zone)
                skipped = (
                    f"{wall:%H:%M} does not exist on {day:%a} {day.day} {day:%b} in {zone.key} "
                    "(the clocks go forward)"
                )
                if not is_open(windows, moment.replace(tzinfo=None)):
                    notes.append(f"{skipped}: that day is left out.")
                    day += timedelta(days=1)
                    continue
                notes.append(f"{skipped}: planned at {moment:%H:%M} instead.")
            if moment <= now:
                past += 1
            elif moment in taken:
                held.append(moment)
            elif request.per_week is None or week_count.get(week, 0) < request.per_week:
                week_count[week] = week_count.get(week, 0) + 1
                moments.append(moment)
        day += timedelta(days=1)
    if request.total is not None:
        moments = moments[: request.total]
    return moments, past, notes, held


def _held_days(held: list[datetime]) -> str:
    """ "2 of the Tuesdays", or "1 of the Tuesdays and 1 of the Fridays"."""
    by_day: dict[int, int] = {}
    for moment in held:
        by_day[moment.weekday()] = by_day.get(moment.weekday(), 0) + 1
    parts = [f"{count} of the {_names([day])}" for day, count in sorted(by_day.items())]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]


def _all_ideas(subject: str, month: date) -> list[tuple[str, str]]:
    lower = subject[0].lower() + subject[1:]
    return [
        (title.format(Topic=subject[0].upper() + subject[1:], topic=lower), angle) for title, angle in _IDEAS
    ] + [
        (
            f"{subject[0].upper() + subject[1:]} in {month:%B}, part {n}",
            "one more practical piece on the topic",
        )
        for n in range(1, 32)
    ]


def _ideas(subject: str, used: list[str], count: int, month: date) -> list[tuple[str, str]]:
    fresh = [idea for idea in _all_ideas(subject, month) if not _is_used(idea[0], used)]
    return fresh[:count]


def _is_used(title: str, used: list[str]) -> bool:
    """A title is used when a used text holds its words in order, or most of its words."""
    slug = slugify(title)
    words = _words(slug)
    for text in used:
        other = slugify(text)
        if slug in other or len(words & _words(other)) >= max(3, math.ceil(0.8 * len(words))):
            return True
    return False


def _words(slug: str) -> set[str]:
    return set(slug.split("-")) - _COMMON


def _month(words: str, today: date) -> tuple[date, str]:
    """The month asked (this month when none is named), and the words without it. ``plan <month>: …`` must
    name one that is read, rather than fall back to this month."""
    header = _HEADER.match(words)
    named = header.group(1).strip() if header else ""
    kept = [word for word in named.split() if word.lower() not in _FILLER]
    if header is not None and kept:
        named, span = " ".join(kept), header.span(1)
    else:
        found = (
            _RELATIVE_MONTH.search(words)
            or _ISO_MONTH.search(words)
            or next((m for m in _MONTH_WORD.finditer(words) if month_number(m.group(1))), None)
        )
        if found is None:
            return today.replace(day=1), words
        named, span = found.group(0), found.span()
    try:
        chosen = months.read_month(named, today)
    except UnreadableMonth as exc:
        raise Unreadable(f"{exc}; name it like December, dec 2027, 2026-12, 12/2026 or next month") from None
    if chosen < today.replace(day=1):
        raise Unreadable(f"{chosen:%B %Y} is over; plan this month or a later one")
    return chosen, words[: span[0]] + " " + words[span[1] :]


def _time_of(words: str) -> time | None:
    """The time of day asked (``at 3pm``, ``at 14:30``), if any."""
    if (found := _AT.search(words)) is None:
        return None
    hour, minute = int(found.group(1)), int(found.group(2) or 0)
    meridiem = (found.group(3) or "").lower()
    if meridiem and 1 <= hour <= 12:
        hour = hour % 12 + (12 if meridiem == "pm" else 0)
    elif meridiem or hour > 23 or minute > 59:
        raise Unreadable(f"“{found.group(0)}” is not a time of day; write it like `at 3pm` or `at 15:00`")
    return time(hour, minute)


def _number(word: str) -> int:
    value = int(word) if word.isdigit() else _NUMBERS[word.lower()]
    if not 1 <= value <= 31:
        raise Unreadable(f"{word[:12]} posts is not a number I can plan (1 to 31); like {EXAMPLE}")
    return value


def _posts(count: int) -> str:
    return f"{count} post{'s' if count != 1 else ''}"


def _names(days: tuple[int, ...] | list[int]) -> str:
    names = [f"{datetime(2024, 1, 1 + d):%A}s" for d in days]  # 1 Jan 2024 was a Monday
    return names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]


def examples(offered: set[str]) -> list[str]:
    return (
        [EXAMPLE, "`plan next month: one post a week about pricing, on Mondays`"]
        if "cms_create_draft" in offered
        else []
    )


GRAMMAR = Grammar(plan, examples)
