"""Undo: people's requests to take an executed action back, and the inverse actions they filed."""

from __future__ import annotations

from sqlmodel import col, select

from storage.records import (
    Intent,
    ProposedAction,
    Run,
    UndoRequest,
    utcnow,
)
from storage.repositories.base import SessionRepository, insert_if_absent


class UndoQueries(SessionRepository):
    """Reads and the one claim behind `/aios undo` and the Undo button."""

    __slots__ = ()

    async def latest_request(self, action_id: int) -> UndoRequest | None:
        query = (
            select(UndoRequest)
            .where(UndoRequest.action_id == action_id)
            .order_by(col(UndoRequest.attempt).desc())
            .limit(1)
        )
        return (await self.session.exec(query)).first()

    async def request_of_intent(self, intent_id: int) -> UndoRequest | None:
        query = select(UndoRequest).where(UndoRequest.intent_id == intent_id)
        return (await self.session.exec(query)).first()

    async def undos_of(self, action_id: int) -> list[ProposedAction]:
        """The inverse actions filed to undo this one, oldest first."""
        query = (
            select(ProposedAction)
            .where(ProposedAction.undoes_action_id == action_id)
            .order_by(col(ProposedAction.id))
        )
        return list((await self.session.exec(query)).all())

    async def undo_filed_for(self, intent_id: int) -> ProposedAction | None:
        """The inverse action a request's intent was filed as, once it has been."""
        query = (
            select(ProposedAction)
            .join(Run, col(Run.id) == ProposedAction.run_id)
            .where(Run.intent_id == intent_id, col(ProposedAction.undoes_action_id).is_not(None))
        )
        return (await self.session.exec(query)).first()

    async def claim(self, action_id: int, attempt: int, intent: Intent) -> bool:
        """Store the request's intent and claim the attempt; False (and nothing to commit) when another
        request took this attempt first."""
        self.session.add(intent)
        await self.session.flush()
        assert intent.id is not None
        return await insert_if_absent(
            self.session,
            UndoRequest,
            {
                "action_id": action_id,
                "attempt": attempt,
                "intent_id": intent.id,
                "requested_by": intent.user,
                "created_at": utcnow(),
            },
        )
