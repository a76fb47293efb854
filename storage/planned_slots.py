"""The planned slots of a content calendar: written once with the executed draft that carries its time, read by
the calendar and by the scheduling agent (which avoids titles already planned)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.records import PlannedSlot
from storage.unit_of_work import UnitOfWorkFactory


class PlannedSlots:
    """One small repository over the ``planned_slot`` table, on the unit of work's session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def of_action(self, action_id: int) -> PlannedSlot | None:
        query = select(PlannedSlot).where(col(PlannedSlot.action_id) == action_id)
        return (await self.session.exec(query)).first()

    async def between(self, team_id: str, start: datetime, end: datetime) -> list[PlannedSlot]:
        """The team's slots planned from ``start`` up to (not including) ``end``, earliest first."""
        query = (
            select(PlannedSlot)
            .where(
                col(PlannedSlot.team_id) == team_id,
                col(PlannedSlot.planned_for) >= start,
                col(PlannedSlot.planned_for) < end,
            )
            .order_by(col(PlannedSlot.planned_for), col(PlannedSlot.id))
        )
        return list((await self.session.exec(query)).all())

    async def titles(self, team_id: str, limit: int = 200) -> list[str]:
        """The newest planned titles of the team: a new calendar does not plan them again."""
        query = (
            select(PlannedSlot.title)
            .where(col(PlannedSlot.team_id) == team_id)
            .order_by(col(PlannedSlot.id).desc())
            .limit(limit)
        )
        return list((await self.session.exec(query)).all())


async def planned_titles(units: UnitOfWorkFactory, team_id: str) -> list[str]:
    """The team's planned titles, in a unit of work of its own (what the scheduling agent is given)."""
    async with units() as uow:
        return await PlannedSlots(uow.repo.session).titles(team_id)
