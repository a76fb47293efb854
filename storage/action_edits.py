"""Reads and writes of edits: people's changes to waiting actions' parameters, and the votes an edit voids."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import delete
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.records import ActionEdit, ApprovalVote


class ActionEdits:
    """One small repository over the ``action_edit`` table, on the unit of work's session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def unprocessed(self) -> list[ActionEdit]:
        """Edits stored and acknowledged but never handled (their process stopped), oldest first."""
        query = select(ActionEdit).where(col(ActionEdit.processed_at).is_(None)).order_by(col(ActionEdit.id))
        return list((await self.session.exec(query)).all())

    async def applied_to(self, action_id: int) -> list[ActionEdit]:
        """The edits that changed this action's parameters, in the order they were made."""
        query = (
            select(ActionEdit)
            .where(
                col(ActionEdit.action_id) == action_id,
                col(ActionEdit.processed_at).is_not(None),
                col(ActionEdit.params_before).is_not(None),
            )
            .order_by(col(ActionEdit.id))
        )
        return list((await self.session.exec(query)).all())

    async def fresh(self, edit_id: int) -> ActionEdit | None:
        """The edit as stored now (not as an earlier read in this session left it)."""
        query = (
            select(ActionEdit).where(col(ActionEdit.id) == edit_id).execution_options(populate_existing=True)
        )
        return (await self.session.exec(query)).first()

    async def void_votes(self, approval_id: int) -> int:
        """Delete the approval's votes (they approved other parameters); how many there were."""
        statement = delete(ApprovalVote).where(col(ApprovalVote.approval_id) == approval_id)
        return int((await self.session.exec(statement)).rowcount)

    async def processed(self, edit: ActionEdit, at: datetime, outcome: str) -> None:
        edit.processed_at, edit.outcome = at, outcome
        self.session.add(edit)
