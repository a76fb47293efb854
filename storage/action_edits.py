"""Reads and writes of edits: people's changes to waiting actions' parameters, and the votes an edit voids."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import delete
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.audit import voiding_votes
from storage.records import ActionEdit, ApprovalVote, Decision

EDIT_REFUSED = "an edit refused"  # the justification of a refusal decision that an edit (not a click) got


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

    async def edited_among(self, action_ids: Collection[int]) -> set[int]:
        """Which of these actions people have edited."""
        query = select(ActionEdit.action_id).where(
            col(ActionEdit.action_id).in_(list(action_ids)), col(ActionEdit.params_before).is_not(None)
        )
        return {action_id for action_id in (await self.session.exec(query)).all() if action_id is not None}

    async def params_when_judged(
        self, action_id: int, decision_id: int, current: dict[str, Any]
    ) -> dict[str, Any]:
        """The parameters the action had when this decision was made: those from before the first edit made
        after it (an edit and its decision are written together, so the edit decisions before this one count
        the edits before it); ``current`` when none was made after it."""
        applied = await self.applied_to(action_id)
        query = select(func.count()).where(
            col(Decision.action_id) == action_id, col(Decision.kind) == "edit", col(Decision.id) < decision_id
        )
        before = (await self.session.exec(query)).one()
        later = applied[before:]
        return dict(later[0].params_before or {}) if later else current

    async def fresh(self, edit_id: int) -> ActionEdit | None:
        """The edit as stored now (not as an earlier read in this session left it)."""
        query = (
            select(ActionEdit).where(col(ActionEdit.id) == edit_id).execution_options(populate_existing=True)
        )
        return (await self.session.exec(query)).first()

    async def void_votes(self, approval_id: int) -> int:
        """Delete the approval's votes (they approved other parameters); how many there were. Called in the
        transaction that writes the edit's decision: the audit chain records these deletions, and only these."""
        votes = select(ApprovalVote.id).where(col(ApprovalVote.approval_id) == approval_id)
        voiding_votes(self.session.sync_session, (await self.session.exec(votes)).all())
        statement = delete(ApprovalVote).where(col(ApprovalVote.approval_id) == approval_id)
        return int((await self.session.exec(statement)).rowcount)

    async def processed(self, edit: ActionEdit, at: datetime, outcome: str) -> None:
        edit.processed_at, edit.outcome = at, outcome
        self.session.add(edit)
