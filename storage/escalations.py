"""Reads and compare-and-sets of escalations: runs handed to people instead of a guess."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import ScalarSelect, literal_column, update
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.records import Escalation, EscalationStatus, Intent, Run


def open_in_intents_thread() -> ScalarSelect[int]:
    """The id of the newest escalation still waiting for a person in the thread of the intent an UPDATE … RETURNING
    works on, as a scalar subquery of its RETURNING (NULL when none waits)."""
    # SQLite's RETURNING is rendered without table names, the subquery's too: the intent's columns are named in
    # full, and the escalation's, left bare, are the subquery's own.
    intent = Intent.__tablename__
    return (
        select(Escalation.id)
        .where(
            col(Escalation.channel) == literal_column(f"{intent}.channel"),
            col(Escalation.thread_ts) == literal_column(f"{intent}.thread_ts"),
            col(Escalation.status) == EscalationStatus.OPEN,
        )
        .order_by(col(Escalation.id).desc())
        .limit(1)
        .scalar_subquery()
    )


class Escalations:
    """One small repository over the ``escalation`` table, on the unit of work's session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def of_run(self, run_id: int) -> Escalation | None:
        return (await self.session.exec(select(Escalation).where(col(Escalation.run_id) == run_id))).first()

    async def answered_by_run(self, run_id: int) -> Escalation | None:
        """The escalation this run's request answered, if it did."""
        return (
            await self.session.exec(select(Escalation).where(col(Escalation.answer_run_id) == run_id))
        ).first()

    async def unasked(self, before: datetime) -> list[tuple[Escalation, Run]]:
        """Open escalations whose message was never posted (a process stopped in between), with their runs."""
        rows = await self.session.exec(
            select(Escalation, Run)
            .join(Run, col(Run.id) == col(Escalation.run_id))
            .where(
                col(Escalation.status) == EscalationStatus.OPEN,
                col(Escalation.message_ts).is_(None),
                col(Escalation.created_at) < before,
            )
        )
        return list(rows.all())

    async def resolve(
        self,
        escalation_id: int,
        status: EscalationStatus,
        by: str,
        at: datetime,
        *,
        answer: str | None = None,
        answer_run_id: int | None = None,
    ) -> bool:
        """Close an open escalation; False when it was no longer open (someone else answered or took it)."""
        result = await self.session.exec(
            update(Escalation)
            .where(col(Escalation.id) == escalation_id, col(Escalation.status) == EscalationStatus.OPEN)
            .values(status=status, resolved_by=by, resolved_at=at, answer=answer, answer_run_id=answer_run_id)
        )
        return bool(result.rowcount)

    async def counts(self, since: datetime, until: datetime) -> dict[str, int]:
        """Escalations raised in the period, by how they stand now (open, answered, taken_over)."""
        rows = await self.session.exec(
            select(Escalation.status, func.count())
            .where(col(Escalation.created_at) >= since, col(Escalation.created_at) < until)
            .group_by(col(Escalation.status))
        )
        return {status: count for status, count in rows.all()}
