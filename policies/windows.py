"""Publishing windows: the days and hours, in the team's time zone, at which posts may go out.

Written in the policy file as ``"tue 09:00-12:00"``, ``"mon-fri 09:00-17:30"`` or ``"sat,sun 10:00-11:00"``;
a window is open from its start up to (not including) its end, on the days it names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_WINDOW = re.compile(r"^\s*([a-z,\-\s]+?)\s+(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$", re.IGNORECASE)
EXAMPLE = '"tue 09:00-12:00", "mon-fri 09:00-17:30" or "sat,sun 10:00-11:00"'


@dataclass(frozen=True)
class PublishingWindow:
    days: frozenset[int]  # Monday is 0, as datetime.weekday() counts
    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> PublishingWindow:
        """One window; a ValueError saying what is wrong and how to write it otherwise."""
        match = _WINDOW.match(text)
        if match is None:
            raise ValueError(f"{text!r} is not a publishing window; write days and hours, like {EXAMPLE}")
        days = _days(match.group(1), text)
        start = _time(match.group(2), match.group(3), text)
        end = _time(match.group(4), match.group(5), text)
        if end <= start:
            raise ValueError(f"{text!r} ends before it starts; a window stays within one day, like {EXAMPLE}")
        return cls(days, start, end)

    def contains(self, local: datetime) -> bool:
        """Whether a wall-clock time of the team's zone falls in this window."""
        return local.weekday() in self.days and self.start <= local.time() < self.end

    def __str__(self) -> str:
        end = "24:00" if self.end == time.max else f"{self.end:%H:%M}"
        return f"{_day_names(self.days)} {self.start:%H:%M}-{end}"


def is_open(windows: Sequence[PublishingWindow], local: datetime) -> bool:
    """No windows: any time is fine."""
    return not windows or any(window.contains(local) for window in windows)


def next_opening(windows: Sequence[PublishingWindow], local: datetime) -> datetime | None:
    """The first window start after ``local`` (wall clock of the team's zone), within a week."""
    starts = [
        datetime.combine(local.date() + timedelta(days=offset), window.start, local.tzinfo)
        for offset in range(8)
        for window in windows
        if (local.weekday() + offset) % 7 in window.days
    ]
    later = [start for start in starts if start > local]
    return min(later) if later else None


def _days(text: str, window: str) -> frozenset[int]:
    found: set[int] = set()
    for part in text.lower().replace(" ", "").split(","):
        first, _, last = part.partition("-")
        for name in (first, last) if last else (first,):
            if name not in DAYS:
                raise ValueError(
                    f"{window!r}: {name or 'nothing'!r} is not a day; use {', '.join(DAYS)} "
                    "(a range like mon-fri, or a list like tue,fri)"
                )
        start, end = DAYS.index(first), DAYS.index(last or first)
        if end < start:
            raise ValueError(
                f"{window!r}: {part} runs backwards; write the days from Monday on, like mon-fri"
            )
        found.update(range(start, end + 1))
    return frozenset(found)


def _time(hours: str, minutes: str, window: str) -> time:
    hour, minute = int(hours), int(minutes)
    if hour == 24 and minute == 0:
        return time.max  # "…-24:00": to the end of the day
    if hour > 23 or minute > 59:
        raise ValueError(f"{window!r}: {hours}:{minutes} is not a time of day (00:00 to 24:00)")
    return time(hour, minute)


def _day_names(days: frozenset[int]) -> str:
    """mon-fri, tue,fri: consecutive days as ranges."""
    ordered = sorted(days)
    runs: list[list[int]] = []
    for day in ordered:
        if runs and day == runs[-1][-1] + 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ",".join(DAYS[run[0]] if len(run) == 1 else f"{DAYS[run[0]]}-{DAYS[run[-1]]}" for run in runs)
