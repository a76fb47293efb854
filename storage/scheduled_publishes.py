"""Reads and compare-and-sets of scheduled publishes: posts due to go out later, settled once by the timer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, or_, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.records import ScheduledPublish


class ScheduledPublishes:
    """One small repository over the ``scheduled_publish`` table, on the unit of work's session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def of_action(self, action_id: int) -> ScheduledPublish | None:
        query = select(ScheduledPublish).where(col(ScheduledPublish.action_id) == action_id)
        return (await self.session.exec(query)).first()

    async def due(self, now: datetime) -> list[ScheduledPublish]:
        """Unsettled publishes whose time has come and whose next try (after a failure) is not later."""
        query = (
            select(ScheduledPublish)
            .where(
                col(ScheduledPublish.done_at).is_(None),
                col(ScheduledPublish.publish_at) <= now,
                or_(col(ScheduledPublish.next_try_at).is_(None), col(ScheduledPublish.next_try_at) <= now),
            )
            .order_by(col(ScheduledPublish.publish_at), col(ScheduledPublish.id))
        )
        return list((await self.session.exec(query)).all())

    async def claim(self, seen: ScheduledPublish, owner: int, now: datetime) -> ScheduledPublish | None:
        """Take the publish if it is still as it was seen: unsettled, held by the same owner (nobody, or a process
        that has died), after as many attempts and with the same next try. Of any number of concurrent callers
        one gets the row, as it is now; a caller that read it before another's failed attempt gets None, rather
        than skipping the wait that attempt set and telling the thread of the failure again."""
        statement = (
            update(ScheduledPublish)
            .where(
                col(ScheduledPublish.id) == seen.id,
                col(ScheduledPublish.done_at).is_(None),
                _same(col(ScheduledPublish.claimed_by), seen.claimed_by),
                col(ScheduledPublish.attempts) == seen.attempts,
                _same(col(ScheduledPublish.next_try_at), seen.next_try_at),
            )
            .values(claimed_by=owner, claimed_at=now)
        )
        if not (await self.session.exec(statement)).rowcount:
            return None
        query = select(ScheduledPublish).where(col(ScheduledPublish.id) == seen.id)
        return (await self.session.exec(query.execution_options(populate_existing=True))).one()

    async def settle(
        self, publish_id: int, owner: int, now: datetime, outcome: str, detail: str | None
    ) -> bool:
        statement = (
            update(ScheduledPublish)
            .where(
                col(ScheduledPublish.id) == publish_id,
                col(ScheduledPublish.claimed_by) == owner,
                col(ScheduledPublish.done_at).is_(None),
            )
            .values(done_at=now, outcome=outcome, detail=detail)
        )
        return bool((await self.session.exec(statement)).rowcount)

    async def wait_until(self, publish_id: int, owner: int, at: datetime) -> bool:
        """Let go of a publish that is not to go out before ``at`` (the next publishing window): no failure,
        so its attempts stay as they are."""
        statement = (
            update(ScheduledPublish)
            .where(col(ScheduledPublish.id) == publish_id, col(ScheduledPublish.claimed_by) == owner)
            .values(claimed_by=None, claimed_at=None, next_try_at=at)
        )
        return bool((await self.session.exec(statement)).rowcount)

    async def try_again(self, publish_id: int, owner: int, error: str, at: datetime) -> bool:
        """Let go of a publish that failed, to be tried again at ``at`` (by any replica)."""
        statement = (
            update(ScheduledPublish)
            .where(col(ScheduledPublish.id) == publish_id, col(ScheduledPublish.claimed_by) == owner)
            .values(
                claimed_by=None,
                claimed_at=None,
                attempts=col(ScheduledPublish.attempts) + 1,
                last_error=error,
                next_try_at=at,
            )
        )
        return bool((await self.session.exec(statement)).rowcount)


def _same(column: Any, seen: object) -> ColumnElement[bool]:
    """The column still holds what was read: NULL compares with IS, not with =."""
    return column.is_(None) if seen is None else column == seen  # type: ignore[no-any-return]
