"""Executions of approved actions, and the ones recovery looks for: never started, or started and never finished."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlmodel import col, select

from storage.records import (
    ActionStatus,
    Execution,
    ExecutionStatus,
    ProposedAction,
)
from storage.repositories.base import SessionRepository


class ExecutionRepository(SessionRepository):
    __slots__ = ()

    async def executions_for_action(self, action_id: int) -> Sequence[Execution]:
        query = select(Execution).where(Execution.action_id == action_id).order_by(col(Execution.id))
        return (await self.session.exec(query)).all()

    async def execution_by_key(self, key: str) -> Execution | None:
        return (await self.session.exec(select(Execution).where(Execution.idempotency_key == key))).first()

    async def approved_actions_without_execution(self) -> list[int]:
        has_execution = select(Execution.id).where(Execution.action_id == ProposedAction.id).exists()
        query = select(ProposedAction.id).where(
            col(ProposedAction.status) == ActionStatus.APPROVED, ~has_execution
        )
        return [action_id for action_id in (await self.session.exec(query)).all() if action_id is not None]

    async def executions_in_flight(self, stale_before: datetime) -> list[Execution]:
        query = select(Execution).where(
            col(Execution.status) == ExecutionStatus.STARTED, col(Execution.started_at) < stale_before
        )
        return list((await self.session.exec(query)).all())
