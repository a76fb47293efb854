"""Reads and compare-and-sets of rejection reasons: why a person rejected an approval, and the run it led to."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime

from sqlalchemy import delete, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.audit import forgetting_reasons
from storage.records import Click, RejectionReason

NOTED = "noted"  # recorded on the action and told in the thread; the revision (if any) may not be planned yet


class RejectionReasons:
    """One small repository over the ``rejection_reason`` table, on the unit of work's session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def of_approval(self, approval_id: int) -> RejectionReason | None:
        query = select(RejectionReason).where(col(RejectionReason.approval_id) == approval_id)
        return (await self.session.exec(query)).first()

    async def unprocessed(self) -> list[RejectionReason]:
        """Reasons stored and acknowledged but never settled (their process stopped), oldest first."""
        query = (
            select(RejectionReason)
            .where(col(RejectionReason.processed_at).is_(None))
            .order_by(col(RejectionReason.id))
        )
        return list((await self.session.exec(query)).all())

    async def of_run(self, run_id: int) -> RejectionReason | None:
        """The reason whose revision is this run: what every planning of the run is given as feedback."""
        query = select(RejectionReason).where(col(RejectionReason.revision_run_id) == run_id)
        return (await self.session.exec(query)).first()

    async def revising(self, run_ids: Collection[int]) -> dict[int, RejectionReason]:
        """The unsettled reasons whose revision is one of these runs, by run id."""
        if not run_ids:
            return {}
        query = select(RejectionReason).where(
            col(RejectionReason.revision_run_id).in_(run_ids), col(RejectionReason.processed_at).is_(None)
        )
        return {r.revision_run_id: r for r in (await self.session.exec(query)).all() if r.revision_run_id}

    async def rejecting_clicks(self, approval_id: int) -> list[str]:
        """Who clicked Reject on this approval in clicks not handled yet, first click first."""
        query = (
            select(Click.user)
            .where(
                col(Click.approval_id) == approval_id,
                col(Click.approve).is_(False),
                col(Click.processed_at).is_(None),
            )
            .order_by(col(Click.id))
        )
        return list((await self.session.exec(query)).all())

    async def note(self, reason_id: int) -> bool:
        """Compare-and-set new → noted: True for the one caller that records and tells the reason."""
        statement = (
            update(RejectionReason)
            .where(col(RejectionReason.id) == reason_id, col(RejectionReason.outcome).is_(None))
            .values(outcome=NOTED)
        )
        return bool((await self.session.exec(statement)).rowcount)

    async def set_revision_run(self, reason_id: int, run_id: int) -> bool:
        """Compare-and-set: the reason's one revision is this run, unless it already has one."""
        statement = (
            update(RejectionReason)
            .where(col(RejectionReason.id) == reason_id, col(RejectionReason.revision_run_id).is_(None))
            .values(revision_run_id=run_id)
        )
        return bool((await self.session.exec(statement)).rowcount)

    async def claim(self, reason_id: int, owner: int, previous: int | None) -> bool:
        """Compare-and-set of who plans the revision: ``owner`` now, if it is still ``previous`` (nobody, or a
        process that died). Of processes planning the same revision, one does."""
        was = col(RejectionReason.owner)
        statement = (
            update(RejectionReason)
            .where(
                col(RejectionReason.id) == reason_id,
                col(RejectionReason.processed_at).is_(None),
                was.is_(None) if previous is None else was == previous,
            )
            .values(owner=owner)
        )
        return bool((await self.session.exec(statement)).rowcount)

    async def forget(self, reason_id: int) -> bool:
        """Delete a reason not counted (its Reject was refused, or someone else decided first), freeing the
        approval's one reason for whoever did reject it; False when it was settled (or deleted) already. The
        audit chain records the deletion."""
        forgetting_reasons(self.session.sync_session, [reason_id])
        statement = delete(RejectionReason).where(
            col(RejectionReason.id) == reason_id,
            col(RejectionReason.processed_at).is_(None),
            col(RejectionReason.outcome).is_(None),  # never one that was told in the thread
        )
        return bool((await self.session.exec(statement)).rowcount)

    async def settle(self, reason_id: int, outcome: str, at: datetime) -> bool:
        """Compare-and-set unprocessed → processed with how it ended; False when it was settled already."""
        statement = (
            update(RejectionReason)
            .where(col(RejectionReason.id) == reason_id, col(RejectionReason.processed_at).is_(None))
            .values(outcome=outcome, processed_at=at)
        )
        return bool((await self.session.exec(statement)).rowcount)
