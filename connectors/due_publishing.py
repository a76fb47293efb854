"""How a CMS is asked, when a scheduled post falls due, to make sure it is live.

The post's own state makes this idempotent: a post already published (by the CMS itself, say WordPress's cron, or
by an earlier attempt whose answer was lost) is reported as live and left alone, and one that was taken down,
deleted or rescheduled meanwhile is left as people left it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol, runtime_checkable


class DueOutcome(enum.StrEnum):
    PUBLISHED = "published"  # we published it now
    ALREADY_LIVE = "already_live"  # the CMS (or an earlier attempt) had published it
    LEFT_ALONE = "left_alone"  # no longer scheduled for that time: deleted, taken down or rescheduled


@dataclass(frozen=True)
class DuePublish:
    outcome: DueOutcome
    detail: str = ""  # for LEFT_ALONE: why, in words ("it is a draft now")
    rescheduled_to: datetime | None = None


def already_live(slug: str) -> str:
    """Why a live post is not scheduled again: readers would lose it until then."""
    return f"the post {slug!r} is already live; unpublish it first if it should go out again later"


@runtime_checkable
class PublishesWhenDue(Protocol):
    async def publish_due(self, slug: str, publish_at: datetime) -> DuePublish:
        """Publish the post scheduled for ``publish_at`` if the CMS has not done so itself. Raises
        ConnectorError when the CMS cannot be asked or refuses just now: the caller tries again later."""
        ...
