"""The planned slots of a content calendar: written once with the executed draft that carries its time, read by
the calendar; and the team's planned drafts, whether waiting for approval, approved or made, which a new plan must
not book again (their titles, slugs and times)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.records import ActionStatus, Intent, PlannedSlot, ProposedAction, Run
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


# A planned draft holds its slot while it may still be made, and once it is.
HOLDING = (ActionStatus.AWAITING_APPROVAL, ActionStatus.APPROVED, ActionStatus.EXECUTED)
PLANNED_DRAFTS_READ = 500


async def holding_actions(units: UnitOfWorkFactory, team_id: str, name: str) -> list[Mapping[str, Any]]:
    """The parameters of the team's newest actions called ``name`` that are waiting for approval, approved or
    done (the scheduling agent reads its planned drafts from them)."""
    query = (
        select(ProposedAction.params)
        .join(Run, col(Run.id) == col(ProposedAction.run_id))
        .join(Intent, col(Intent.id) == col(Run.intent_id))
        .where(
            col(Intent.team_id) == team_id,
            col(ProposedAction.name) == name,
            col(ProposedAction.status).in_([str(status) for status in HOLDING]),
        )
        .order_by(col(ProposedAction.id).desc())
        .limit(PLANNED_DRAFTS_READ)
    )
    async with units() as uow:
        return list((await uow.session.exec(query)).all())
