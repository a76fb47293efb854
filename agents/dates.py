"""Times people write ("next Monday 9am", "tomorrow 14:00", "2026-12-01 09:00"), read in the team's time zone,
and told back unambiguously: "Tue 1 Dec 2026 09:00 Europe/Berlin (08:00 UTC)".

dateparser reads the words; the wall-clock time it finds is then placed in the zone here, so that a time the
clocks skip when they go forward is refused, and one they pass twice when they go back is the first of the two.
"""

from __future__ import annotations

import re
import warnings
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

ACCEPTED = "`next Monday 9am`, `tomorrow 14:00`, `on Dec 3 at 9`, `2026-12-01 09:00` or `in 2 hours`"
MAX_LENGTH = 80
# A time of day, or a time from now: a bare "friday" would otherwise mean midnight, which nobody means.
_HAS_TIME = re.compile(
    r"\d:\d\d|\d\s*(?:am|pm)\b|\b(?:noon|midday|midnight|now)\b|\bin\s+\d+\s*(?:min|minutes?|h|hours?)\b"
    r"|T\d\d|\bat\s+\d{1,2}\b",
    re.IGNORECASE,
)
_BARE_HOUR = re.compile(r"\bat\s+(\d{1,2})\b(?!\s*(?::|am|pm|\.\d))", re.IGNORECASE)
_LEADING_ON = re.compile(r"^\s*on\s+", re.IGNORECASE)
# "in 2 hours": a duration from now, which across a clock change is not the wall clock moved on by as much.
_FROM_NOW = re.compile(r"^\s*in\s+(\d{1,4})\s*(min|minutes?|h|hours?)\s*$", re.IGNORECASE)
_WEEKDAY = re.compile(
    r"\b(mon|tue|wed|thu|fri|sat|sun)(?:day|s|sday|nesday|r|rs|rsday|urday)?\b", re.IGNORECASE
)
_NEXT = re.compile(r"\bnext\b", re.IGNORECASE)
_WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


UTC_ZONE = ZoneInfo("UTC")


class UnreadableTime(ValueError):
    """The words are not a time this can read; the message says why and what is accepted."""


def read_time(text: str, zone: ZoneInfo, now: datetime) -> datetime:
    """The moment ``text`` means, read as a wall-clock time in ``zone`` (unless it names its own zone or
    offset), relative to ``now``; timezone-aware. Raises UnreadableTime."""
    words = " ".join(text.split())
    if not words or len(words) > MAX_LENGTH or not _HAS_TIME.search(words):
        raise UnreadableTime(
            f"I can't read {_quoted(words)} as a day and time of day; write it like {ACCEPTED} ({zone.key})"
        )
    if (duration := _FROM_NOW.match(words)) is not None:
        amount, unit = int(duration.group(1)), duration.group(2).lower()
        step = timedelta(hours=amount) if unit.startswith("h") else timedelta(minutes=amount)
        return now.astimezone(UTC) + step
    normalised = _BARE_HOUR.sub(lambda m: f"at {m.group(1)}:00", _LEADING_ON.sub("", words))
    local_now = now.astimezone(zone).replace(tzinfo=None)
    import dateparser  # here: importing it takes about 0.3 s, which every command importing the bot would pay

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # dateparser warns about its own use of deprecated APIs
            found = dateparser.parse(
                normalised,
                languages=["en"],
                settings={
                    "TIMEZONE": zone.key,
                    "RETURN_AS_TIMEZONE_AWARE": False,  # the wall clock, placed in the zone below
                    "RELATIVE_BASE": local_now,
                    "PREFER_DATES_FROM": "future",
                },
            )
    except Exception:  # dateparser has no error type of its own: any failure means it could not read it
        found = None
    if found is None:
        raise UnreadableTime(
            f"I can't read {_quoted(words)} as a time; write it like {ACCEPTED} ({zone.key})"
        )
    wall_clock = found.replace(tzinfo=None)
    if _today_meant(words, local_now, wall_clock):
        wall_clock -= timedelta(days=7)
    return place(wall_clock, zone)


def _today_meant(words: str, local_now: datetime, found: datetime) -> bool:
    """dateparser takes a bare weekday that is today as next week's; without "next", and with the time still
    ahead today, people mean today."""
    named = {match.group(1).lower() for match in _WEEKDAY.finditer(words)}
    today = _WEEKDAYS[local_now.weekday()]
    return (
        named == {today}
        and not _NEXT.search(words)
        and found.date() == local_now.date() + timedelta(days=7)
        and found - timedelta(days=7) > local_now
    )


def place(wall_clock: datetime, zone: ZoneInfo) -> datetime:
    """A naive wall-clock time of ``zone`` as a moment: the earlier one when the clocks pass it twice; refused
    when the clocks skip it."""
    placed = wall_clock.replace(tzinfo=zone, fold=0)
    if placed.astimezone(UTC).astimezone(zone).replace(tzinfo=None) != wall_clock:
        raise UnreadableTime(
            f"{wall_clock:%H:%M} does not exist on {_day(wall_clock)} in {zone.key}: the clocks go forward "
            "then; pick a time an hour later"
        )
    return placed


def describe(moment: datetime, zone: ZoneInfo) -> str:
    """``Tue 1 Dec 2026 09:00 Europe/Berlin (08:00 UTC)``; the UTC date too when it is another day."""
    local = moment.astimezone(zone)
    utc = moment.astimezone(UTC)
    told = f"{_day(local)} {local:%H:%M} {zone.key}"
    if zone.key == "UTC":
        return told
    other_day = "" if utc.date() == local.date() else f" on {_day(utc)}"
    return f"{told} ({utc:%H:%M} UTC{other_day})"


def _day(moment: datetime) -> str:
    return f"{moment:%a} {moment.day} {moment:%b %Y}"


def _quoted(words: str) -> str:
    shown = words if len(words) <= MAX_LENGTH else words[: MAX_LENGTH - 1] + "…"
    return f"“{shown}”" if shown else "nothing"
