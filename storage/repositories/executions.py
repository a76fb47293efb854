"""Executions of approved actions, and the ones recovery looks for: never started, or started and never finished."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlmodel import col, select

from storage.records import (
    ActionStatus,
    AgentPause,
    Execution,
    ExecutionStatus,
    Intent,
    ProposedAction,
    Run,
)
from storage.repositories.base import SessionRepository
from storage.repositories.budgets import model_spend_of_run


@dataclass(frozen=True)
class ExecutionInHand:
    """An execution with the action it runs, its run, the intent that asked for it and what the model cost for
    the run so far."""

    execution: Execution
    action: ProposedAction
    run: Run
    intent: Intent
    model_spend: float


class ExecutionRepository(SessionRepository):
    __slots__ = ()

    async def action_to_execute(self, action_id: int) -> tuple[ProposedAction, Run, AgentPause | None] | None:
        """The action, its run and its agent's pause if paused: one statement."""
        query = (
            select(ProposedAction, Run, AgentPause)
            .join(Run, col(Run.id) == col(ProposedAction.run_id))
            .outerjoin(AgentPause, col(AgentPause.agent) == col(Run.agent))
            .where(col(ProposedAction.id) == action_id)
        )
        found = (await self.session.exec(query)).first()
        return None if found is None else (found[0], found[1], found[2])

    async def execution_in_hand(self, key: str) -> ExecutionInHand | None:
        """The execution of this idempotency key with its action, run, intent and the run's model spend (for the
        spend metric of a run the execution completes): one statement."""
        query = (
            select(Execution, ProposedAction, Run, Intent)
            .add_columns(model_spend_of_run(Run.id, Run.intent_id))
            .join(ProposedAction, col(ProposedAction.id) == col(Execution.action_id))
            .join(Run, col(Run.id) == col(ProposedAction.run_id))
            .join(Intent, col(Intent.id) == col(Run.intent_id))
            .where(col(Execution.idempotency_key) == key)
        )
        # sqlmodel types exec() for at most four columns; the rows are the five selected.
        found = (await self.session.exec(query)).first()  # type: ignore[call-overload]
        if found is None:
            return None
        execution, action, run, intent, spend = found
        return ExecutionInHand(execution, action, run, intent, float(spend))

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
