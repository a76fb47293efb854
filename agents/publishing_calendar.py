"""When posts may go out: the team's time zone, the policy's publishing windows and the clock, and the
refusals of a publish that cannot go out when asked (a time in the past, a time outside the windows).

The planner is told the zone and the time in one context line; the offline grammar reads both back from it,
as a model would.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agents.dates import UTC_ZONE, describe
from connectors.actions import CmsPublish
from policies.windows import PublishingWindow, is_open, next_opening
from storage.records import utcnow

_CONTEXT_LINE = re.compile(r"^Team time zone: (\S+); it is now (\S+)\.", re.MULTILINE)


@dataclass(frozen=True)
class PublishingCalendar:
    zone: ZoneInfo = UTC_ZONE
    windows: tuple[PublishingWindow, ...] = ()
    clock: Callable[[], datetime] = utcnow

    def context_line(self) -> str:
        now = self.clock().astimezone(self.zone).replace(microsecond=0)
        line = f"Team time zone: {self.zone.key}; it is now {now.isoformat()}."
        if self.windows:
            line += f" Posts may go out only in the publishing windows {self.windows_text()}."
        return line + " Give publish_at with its UTC offset."

    def windows_text(self) -> str:
        return f"{', '.join(str(window) for window in self.windows)} ({self.zone.key})"

    def refusal(self, action: CmsPublish) -> str | None:
        """Why this publish cannot go out when it asks to; None when it can."""
        now = self.clock()
        if action.publish_at is not None and action.publish_at <= now:
            return (
                f"{describe(action.publish_at, self.zone)} is in the past (it is now {describe(now, self.zone)}); "
                "give a later time"
            )
        moment = (action.publish_at or now).astimezone(self.zone)
        if is_open(self.windows, moment):
            return None
        opening = next_opening(self.windows, moment)
        nearest = f"; the next one opens {describe(opening, self.zone)}" if opening is not None else ""
        when = f"{describe(action.publish_at, self.zone)} is" if action.publish_at else "now is"
        return f"{when} outside the publishing windows {self.windows_text()}{nearest}"


def read_context(system: str) -> tuple[ZoneInfo, datetime]:
    """The zone and time a context line tells the planner; UTC and the real clock when there is none."""
    match = _CONTEXT_LINE.search(system)
    if match is not None:
        try:
            return ZoneInfo(match.group(1)), datetime.fromisoformat(match.group(2))
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return UTC_ZONE, datetime.now(UTC)
