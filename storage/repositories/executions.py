"""Executions of approved actions, and the ones recovery looks for: never started, or started and never finished."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, bindparam, or_, update
from sqlmodel import col, select

from storage.records import (
    ActionStatus,
    AgentPause,
    Decision,
    Execution,
    ExecutionAttempt,
    ExecutionStatus,
    Intent,
    ProposedAction,
    Run,
    RunStatus,
    utcnow,
)
from storage.repositories.base import (
    SessionRepository,
    audited_write,
    core_connection,
    insert_records,
    inserted_key,
)
from storage.repositories.budgets import model_spend_of_run
from storage.repositories.runs import MOVE_ACTION, run_status_parameters, run_status_update

# The decisions that let an action run: a person's approval (or vote towards one), or a policy rule's allow.
_ALLOWING = or_(
    and_(col(Decision.kind) == "human", col(Decision.verdict).in_(("vote", "approved"))),
    and_(col(Decision.kind) == "policy", col(Decision.verdict) == "allow"),
)
_WHO_ALLOWED = (col(Decision.kind), col(Decision.actor), col(Decision.rule_id))

# The statements of ExecutionRepository.book, built once (a statement remembers its cache key): the execution
# settled, a compare-and-set on its status being ``was``; and its run's new status, with its model spend summed
# by the ids in hand (SQLite names RETURNING's columns without their table, so a subquery there cannot tell the
# run's from its own). Its action is moved on by runs' MOVE_ACTION.
_SETTLE = (
    update(Execution)
    .where(
        col(Execution.id) == bindparam("execution_id"),
        col(Execution.status) == bindparam("was"),
    )
    .values(
        status=bindparam("set_status"),
        result=bindparam("set_result"),
        error=bindparam("set_error"),
        finished_at=bindparam("set_finished_at"),
    )
    .execution_options(synchronize_session=False)
)
_MOVE_RUN = run_status_update(("updated_at",), only_if_moved=True).returning(
    col(Run.status), model_spend_of_run(bindparam("run_id"), bindparam("spend_intent_id"))
)


@dataclass(frozen=True)
class ActionToExecute:
    """An approved action as its claim reads it: its run, its agent's pause if paused, the intent that asked
    for it and who allowed it (the people who approved it, in the order they did, each once; the policy rule
    that allowed it without asking anyone, if one did)."""

    action: ProposedAction
    run: Run
    pause: AgentPause | None
    intent: Intent
    approvers: tuple[str, ...]
    allowed_by_rule: str | None


@dataclass(frozen=True)
class ExecutionInHand:
    """A claimed execution with what booking it needs: the claim hands it on, a restart reads it again
    (:meth:`ExecutionRepository.execution_in_hand`)."""

    execution_id: int
    key: str
    action: ProposedAction
    intent: Intent
    approvers: tuple[str, ...]
    allowed_by_rule: str | None


@dataclass(frozen=True)
class Booked:
    """A booking done: what the model cost for the run (the spend metric's), when this booking completed it."""

    completed_run_spend: float | None
    # Booked over a failure another process booked first: the action, told as failed, took effect after all.
    over_failure: bool = False


class ExecutionRepository(SessionRepository):
    __slots__ = ()

    async def action_to_execute(self, action_id: int) -> ActionToExecute | None:
        """The action with its run, its agent's pause, its intent and who allowed it: one statement (a row
        per allowing decision)."""
        query = (
            select(ProposedAction, Run, Intent, AgentPause)
            .add_columns(*_WHO_ALLOWED)
            .join(Run, col(Run.id) == col(ProposedAction.run_id))
            .join(Intent, col(Intent.id) == col(Run.intent_id))
            .outerjoin(AgentPause, col(AgentPause.agent) == col(Run.agent))
            .outerjoin(Decision, and_(col(Decision.action_id) == col(ProposedAction.id), _ALLOWING))
            .where(col(ProposedAction.id) == action_id)
            .order_by(col(Decision.id))
        )
        # sqlmodel types exec() for at most four columns; the rows are the seven selected.
        rows = (await self.session.exec(query)).all()  # type: ignore[call-overload]
        if not rows:
            return None
        action, run, intent, pause = rows[0][:4]
        approvers, rule = _who_allowed(row[4:] for row in rows)
        return ActionToExecute(action, run, pause, intent, approvers, rule)

    async def claim(self, action_id: int, key: str, now: datetime, owner: int) -> int | None:
        """Claim the idempotency key with a new execution, started now by ``owner``: its id, or None when the
        key was claimed before (one INSERT … ON CONFLICT DO NOTHING)."""
        values = {
            "action_id": action_id,
            "idempotency_key": key,
            "status": ExecutionStatus.STARTED,
            "result": {},
            "started_at": now,
            "owner": owner,
        }
        execution_id: int | None = await inserted_key(self.session, Execution, values)
        return execution_id

    async def execution_in_hand(self, execution_id: int) -> tuple[Execution, ExecutionInHand] | None:
        """The execution, and what booking it needs as its claim had it: one statement (a row per allowing
        decision)."""
        query = (
            select(Execution, ProposedAction, Intent)
            .add_columns(*_WHO_ALLOWED)
            .join(ProposedAction, col(ProposedAction.id) == col(Execution.action_id))
            .join(Run, col(Run.id) == col(ProposedAction.run_id))
            .join(Intent, col(Intent.id) == col(Run.intent_id))
            .outerjoin(Decision, and_(col(Decision.action_id) == col(ProposedAction.id), _ALLOWING))
            .where(col(Execution.id) == execution_id)
            .order_by(col(Decision.id))
        )
        rows = (await self.session.exec(query)).all()  # type: ignore[call-overload]
        if not rows:
            return None
        execution, action, intent = rows[0][:3]
        approvers, rule = _who_allowed(row[3:] for row in rows)
        assert execution.id is not None
        in_hand = ExecutionInHand(execution.id, execution.idempotency_key, action, intent, approvers, rule)
        return execution, in_hand

    async def book(
        self,
        in_hand: ExecutionInHand,
        status: ExecutionStatus,
        result: dict[str, Any],
        error: str | None,
        finished_at: datetime,
        attempts: Sequence[ExecutionAttempt],
    ) -> Booked | None:
        """Settle an execution in flight with its outcome and the attempts that led to it, and move its action
        (executed or failed) and its run on; nothing is read first. A compare-and-set on the execution being in
        flight: None, and nothing written, when another process settled it first — unless that process booked a
        failure and this is a success: the side effect happened (the other's own try failed while this one's was
        landing), and the record must say so (``Booked.over_failure``)."""
        settling = {
            "execution_id": in_hand.execution_id,
            "set_status": status,
            "set_result": result,
            "set_error": error,
            "set_finished_at": finished_at,
        }

        async def settled_from(was: ExecutionStatus) -> bool:
            return bool((await audited_write(self.session, _SETTLE, {**settling, "was": was})).rowcount)

        # Over a failure only when it is not in flight: a second statement, in that rare case alone.
        over_failure = False
        if not await settled_from(ExecutionStatus.STARTED):
            over_failure = status == ExecutionStatus.SUCCEEDED and await settled_from(ExecutionStatus.FAILED)
            if not over_failure:
                return None
        await insert_records(self.session, attempts)
        action = in_hand.action
        action_status = ActionStatus.EXECUTED if status == ExecutionStatus.SUCCEEDED else ActionStatus.FAILED
        await audited_write(self.session, MOVE_ACTION, {"action_id": action.id, "set_status": action_status})
        moved = {
            **run_status_parameters(action.run_id, {"updated_at": utcnow()}),
            "spend_intent_id": in_hand.intent.id,
        }
        row = (await (await core_connection(self.session)).execute(_MOVE_RUN, moved)).first()
        if row is None or row[0] != RunStatus.COMPLETED:
            return Booked(None, over_failure)
        return Booked(float(row[1]), over_failure)

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


def _who_allowed(
    decisions: Iterable[Sequence[Any]],
) -> tuple[tuple[str, ...], str | None]:
    """The people who approved (in order, each once) and the policy rule that allowed, from allowing
    decisions' (kind, actor, rule); rows of an outer join that found none are (None, None, None)."""
    rows = list(decisions)
    approvers = [actor for kind, actor, _ in rows if kind == "human"]
    rule = next((rule for kind, _, rule in rows if kind == "policy"), None)
    return tuple(dict.fromkeys(approvers)), rule
