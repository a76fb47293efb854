"""Approved actions run once: the idempotency key is claimed, the connector is retried on transient errors."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from datetime import datetime
from typing import Any

import stamina
import structlog
from pydantic_core import to_jsonable_python

from connectors.actions import Action, safe_inverse
from connectors.errors import (
    ConnectorError,
    InvalidActionError,
    OutcomeUnknownError,
    PermanentConnectorError,
    TransientConnectorError,
)
from runtime.crashpoints import crash_point
from runtime.handlers.base import Collaborators, HandlerBase
from runtime.handlers.claims import AgentPaused, CannotRun, Claims
from runtime.handlers.content_calendar import record_planned_slot
from runtime.handlers.memories import prepare_outcome, remember_outcome_within
from runtime.handlers.scheduled_publishing import record_due_publish
from runtime.messagebus import Message
from runtime.messages import (
    ActionAllowed,
    ActionApproved,
    ActionExecuted,
    ActionFailed,
    AgentResumed,
    ExecuteAction,
    ExecutedAction,
    ReconcileExecution,
)
from runtime.mrkdwn import escape
from runtime.notices import Done, ReportedFailed, Thread
from runtime.observability import EXECUTIONS, action_executed, completed_run_spend
from runtime.transport import TransportError
from storage.ids import format_id
from storage.memory import PreparedMemory
from storage.records import ActionStatus, ExecutionAttempt, ExecutionStatus, ProposedAction, RunStatus
from storage.repositories.executions import ExecutionInHand
from storage.unit_of_work import UnitOfWork

log = structlog.get_logger(__name__)

CONNECTOR_TIMEOUT_SECONDS = 30.0
CONNECTOR_ATTEMPTS = 5
CONNECTOR_MAX_WAIT_SECONDS = 30.0


class Executions(HandlerBase):
    def __init__(self, collaborators: Collaborators) -> None:
        super().__init__(collaborators)
        self.claims = Claims(collaborators)

    async def execute_when_cleared(self, event: ActionAllowed | ActionApproved) -> Sequence[Message]:
        """Run what the approving click claimed; claim (and run) the rest."""
        claimed = event.claimed if isinstance(event, ActionApproved) else None
        if claimed is None:
            return [ExecuteAction(event.action_id)]
        crash_point("execution_claimed")
        return await self._run(claimed.in_hand, claimed.action, lookup_first=False)

    async def execute_action(self, command: ExecuteAction) -> Sequence[Message]:
        async with self.units() as uow:
            found = await uow.executions.action_to_execute(command.action_id)
            assert found is not None
            if found.action.status != ActionStatus.APPROVED:
                return []
            # The pause check, the capability and the claim share one transaction, so a pause or a second
            # execution cannot slip in between them.
            claim = await self.claims.claim_in(uow, found)
            if isinstance(claim, AgentPaused):
                found.run.status = RunStatus.PAUSED
                uow.session.add(found.run)
            elif isinstance(claim, CannotRun):
                # Failed for good, so recovery does not pick the action up (and fail it) at every start.
                await uow.runs.set_action_status(command.action_id, ActionStatus.FAILED)
            if claim is not None:
                await uow.commit()
        if isinstance(claim, AgentPaused):
            thread, _ = await self._thread_of_action(command.action_id)
            await self._say(
                thread,
                f":double_vertical_bar: {format_id('A', command.action_id)} is approved, but the "
                f"{found.run.agent} agent is paused; it runs when the agent is resumed.",
            )
            return []
        if isinstance(claim, CannotRun):
            return [ActionFailed(command.action_id, claim.reason)]
        if claim is None:
            await self._unauthorised(command.action_id)
            return []
        crash_point("execution_claimed")
        return await self._run(claim.in_hand, claim.action, lookup_first=False)

    async def _unauthorised(self, action_id: int) -> None:
        """No spendable capability: already executed (a duplicate: quiet), or stale (say so, and fail it)."""
        async with self.units() as uow:
            executions = await uow.executions.executions_for_action(action_id)
            if executions:
                log.info("execution_already_claimed", action=action_id)
                return
            await uow.runs.set_action_status(action_id, ActionStatus.FAILED)
            await uow.commit()
        log.warning("execution_without_capability", action=action_id)
        thread, _ = await self._thread_of_action(action_id)
        await self._say(
            thread,
            f":lock: {format_id('A', action_id)} was not run: its approval has expired or no longer matches the "
            "action. Ask again to get a fresh approval.",
        )

    async def reconcile(self, command: ReconcileExecution) -> Sequence[Message]:
        """An execution left in flight by a crash: ask the connector by its key whether it landed, and only
        if it did not, execute it now (with the same key, so even a late landing cannot make two)."""
        async with self.units.read() as uow:
            found = await uow.executions.execution_in_hand(command.execution_id)
        if found is None or found[0].status != ExecutionStatus.STARTED:
            return []
        in_hand = found[1]
        try:
            action = self.claims.stored_action(in_hand.action)
        except InvalidActionError as exc:
            # Settled as failed, so the next start does not try (and fail) again. It was in flight when the
            # process stopped: the connector may have done it before.
            failed = ActionFailed(in_hand.action.id or 0, str(exc), certainly_undone=False)
            return await self._book_failure(in_hand, str(exc), _Attempts(), failed)
        log.info("execution_reconciling", execution=in_hand.execution_id, action=in_hand.action.id)
        return await self._run(in_hand, action, lookup_first=True)

    async def _run(
        self, in_hand: ExecutionInHand, action: Action, *, lookup_first: bool
    ) -> Sequence[Message]:
        """Call the connector (retrying transient failures, each attempt recorded) and book the outcome."""
        action_id, key = in_hand.action.id or 0, in_hand.key
        attempts = _Attempts()
        try:
            result = await self._lookup(action, key, attempts) if lookup_first else None
            if result is None and (late := self.claims.too_late(action)) is not None:
                self._count(action, "failed")
                failed = ActionFailed(action_id, late, certainly_undone=True)
                return await self._book_failure(in_hand, late, attempts, failed)
            if result is None:
                result = await self._execute(action, key, attempts)
        except (ConnectorError, TimeoutError) as exc:
            error = str(exc) or type(exc).__name__
            self._count(action, "failed")
            undone = isinstance(exc, PermanentConnectorError | InvalidActionError)
            return await self._book_failure(
                in_hand, error, attempts, ActionFailed(action_id, error, certainly_undone=undone)
            )
        except Exception as exc:
            # A bug in a connector (a KeyError, a database error, …) ends the execution like a refusal would:
            # failed, with its attempts, and earlier steps compensated. People get plain words; the log the rest.
            log.exception(
                "connector_failed_unexpectedly",
                action=action_id,
                error_type=type(exc).__name__,
                error=_short(str(exc)),
            )
            self._count(action, "failed")
            failed = ActionFailed(
                action_id,
                f"the {action.name} connector stopped with an unexpected error",
                certainly_undone=False,
            )
            return await self._book_failure(in_hand, _unexpected(exc), attempts, failed)
        crash_point("connector_done")
        booked = await self._book_success(in_hand, result, attempts)
        self._count(action, "succeeded")
        return booked

    def _count(self, action: Action, outcome: str) -> None:
        EXECUTIONS.labels(outcome=outcome).inc()
        amount = getattr(action, "amount", None)
        action_executed(
            self.registry.connector_label(action.name),
            action.name,
            outcome,
            float(amount) if isinstance(amount, int | float) else None,
        )

    async def _lookup(self, action: Action, key: str, attempts: _Attempts) -> dict[str, Any] | None:
        async for attempt in stamina.retry_context(on=_retry_after, attempts=CONNECTOR_ATTEMPTS):
            with attempt, attempts.record("lookup"):
                async with asyncio.timeout(CONNECTOR_TIMEOUT_SECONDS):
                    found = await self.registry.lookup(action, key)
                attempts.outcome = "ok" if found is not None else "not_found"
        return found

    async def _execute(self, action: Action, key: str, attempts: _Attempts) -> dict[str, Any]:
        # A timeout is retried too: the same idempotency key makes a repeat of a call that did land harmless.
        async for attempt in stamina.retry_context(on=_retry_after, attempts=CONNECTOR_ATTEMPTS):
            with attempt, attempts.record("execute"):
                async with asyncio.timeout(CONNECTOR_TIMEOUT_SECONDS):
                    result = await self.registry.execute(action, key)
        return result

    async def continue_paused(self, event: AgentResumed) -> Sequence[Message]:
        """Approved actions that waited for their agent run now."""
        async with self.units() as uow:
            waiting = [
                action.id
                for run in await uow.runs.paused_runs(event.agent)
                for action in await uow.runs.actions_for_run(run.id or 0)
                if action.status == ActionStatus.APPROVED and action.id is not None
            ]
        return [ExecuteAction(action_id) for action_id in waiting]

    async def _book_failure(
        self, in_hand: ExecutionInHand, error: str, attempts: _Attempts, failed: ActionFailed
    ) -> Sequence[Message]:
        """Book a failure with the attempts that led to it; its event follows unless another process booked
        the execution first."""
        async with self.units() as uow:
            booked = await uow.executions.book(
                in_hand, ExecutionStatus.FAILED, {}, error, self.clock(), attempts.rows(in_hand)
            )
            if booked is None:
                return self._booked_elsewhere(in_hand)
            await uow.commit()
        return [failed]

    async def _book_success(
        self, in_hand: ExecutionInHand, result: dict[str, object], attempts: _Attempts
    ) -> Sequence[Message]:
        """Book the outcome, the attempts that led to it, the action's new state and what follows from it (a
        due publish, a planned slot, the outcome's memory when the store keeps it in this database, made ready
        before) in one transaction; the event that tells of it carries what its subscribers need to know."""
        finished = self.clock()
        # A result that is not JSON (a connector bug) would fail the commit and leave the execution in flight.
        stored = to_jsonable_python(result, fallback=str)
        event = action_executed_event(in_hand, ExecutionStatus.SUCCEEDED, stored, finished)
        outcome = await prepare_outcome(self.memory, self.registry, event)
        async with self.units() as uow:
            remembered = await remember_outcome_within(uow, self.memory, outcome, in_hand.action.id or 0)
            booked = await uow.executions.book(
                in_hand, ExecutionStatus.SUCCEEDED, stored, None, finished, attempts.rows(in_hand)
            )
            if booked is None:
                return self._booked_elsewhere(in_hand)
            await record_due_publish(uow, self.registry, self.zone, in_hand.action, in_hand.intent, result)
            await record_planned_slot(uow, self.registry, self.zone, in_hand.action, in_hand.intent)
            reported = await _reported_failed(uow, in_hand.action) if booked.over_failure else None
            await uow.commit()
        if booked.completed_run_spend is not None:
            completed_run_spend(booked.completed_run_spend)
        if reported is not None:
            log.warning(
                "execution_succeeded_after_failure", execution=in_hand.execution_id, action=in_hand.action.id
            )
        unwritten = outcome if isinstance(outcome, PreparedMemory) and not remembered else None
        return [
            replace(
                event, outcome_remembered=remembered, outcome_prepared=unwritten, reported_failed=reported
            )
        ]

    @staticmethod
    def _booked_elsewhere(in_hand: ExecutionInHand) -> Sequence[Message]:
        """Another process (one that took the execution over) booked it first: its booking stands, and told."""
        log.warning("execution_booked_elsewhere", execution=in_hand.execution_id, action=in_hand.action.id)
        return []

    async def report_execution(self, event: ActionExecuted) -> Sequence[Message]:
        executed = event.action
        thread = Thread(executed.channel, executed.thread_ts)
        details = ", ".join(f"{k}: {v}" for k, v in executed.result.items() if k != "replayed")
        action_ref = format_id("A", event.action_id)
        try:
            action = self.registry.validate(executed.name, executed.params)
            summary = self._told_summary(action)
        except Exception:
            # The stored parameters no longer make a valid action (its connector's schema changed since it
            # was approved): what ran is still told, from what is stored, and no undo is offered.
            log.exception("done_summary_unavailable", action=event.action_id, name=executed.name)
            summary, undo = _stored_summary(executed.name, executed.params), None
        else:
            undo = action_ref if safe_inverse(action, executed.result) is not None else None
        done = Done(
            f":white_check_mark: Done: {escape(summary)}. ({escape(details)})",
            f"`{format_id('E', event.execution_id)}` · `{action_ref}` · `/aios why {action_ref}` explains it",
            undo=undo,
            reported_failed=event.reported_failed,
        )
        try:
            await self.transport.report_done(thread, done)
        except TransportError as exc:
            log.error("reply_not_delivered", channel=thread.channel, thread=thread.ts, error=str(exc))
        return []

    async def report_failure(self, event: ActionFailed) -> Sequence[Message]:
        thread, proposed = await self._thread_of_action(event.action_id)
        if proposed.status == ActionStatus.EXECUTED:
            # Booked done after all before its failure was told: the Done says both, and is the last word.
            log.info("failure_not_told", action=proposed.id)
            return []
        await self._say(
            thread,
            f":x: {proposed.name} failed: {escape(event.error)}. "
            + (
                "Nothing was changed."
                if event.certainly_undone
                else "It may still have taken effect there, so check before asking again."
            ),
            context=f"`{format_id('A', proposed.id)}`",
        )
        return []


async def _reported_failed(uow: UnitOfWork, action: ProposedAction) -> ReportedFailed:
    """Where the run's steps before ``action`` stand after a failure: undone, with an undo filed, or handed to a
    person. Nothing for an undo itself: a failed undo is never undone in turn."""
    if action.compensates is not None:
        return ReportedFailed()
    steps = await uow.runs.actions_for_run(action.run_id)
    this = action.id or 0
    earlier = [step for step in steps if (step.id or 0) < this and step.compensates is None]
    undo_filed = {step.compensates for step in steps if step.compensates is not None}

    def ids(kept: Iterable[ProposedAction]) -> tuple[str, ...]:
        return tuple(format_id("A", step.id) for step in kept)

    return ReportedFailed(
        undone=ids(step for step in earlier if step.status == ActionStatus.COMPENSATED),
        being_undone=ids(
            step for step in earlier if step.status == ActionStatus.EXECUTED and step.id in undo_filed
        ),
        handed_to_a_person=ids(step for step in earlier if step.status == ActionStatus.ESCALATED),
    )


def _stored_summary(name: str, params: Any) -> str:
    """An action told from its stored name and parameters, when they cannot be read as the action."""
    told = (
        ", ".join(f"{k}: {v}" for k, v in sorted(params.items()))
        if isinstance(params, dict)
        else repr(params)
    )
    return f"{name} ({_short(told, 500)})"


def _unexpected(exc: Exception) -> str:
    """What an execution records about an exception no connector was meant to raise: its type and a short message."""
    return _short(f"{type(exc).__name__}: {exc}")


def _short(text: str, limit: int = 200) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _retry_after(exc: Exception) -> bool | float:
    """stamina backoff hook: transient failures are retried, after the wait the connector was asked for if any."""
    if isinstance(exc, TransientConnectorError):
        return min(exc.retry_after, CONNECTOR_MAX_WAIT_SECONDS) if exc.retry_after is not None else True
    return isinstance(exc, TimeoutError)


class _Attempts:
    """Each connector call of one execution, kept as ExecutionAttempt rows until the outcome is booked."""

    def __init__(self) -> None:
        self._number = 0
        self.recorded: list[tuple[int, str, str, str | None]] = []  # number, kind, outcome, error
        self.outcome = "ok"

    def rows(self, in_hand: ExecutionInHand) -> list[ExecutionAttempt]:
        return [
            ExecutionAttempt(
                execution_id=in_hand.execution_id, number=number, kind=kind, outcome=outcome, error=error
            )
            for number, kind, outcome, error in self.recorded
        ]

    @contextmanager
    def record(self, kind: str) -> Iterator[None]:
        self._number += 1
        self.outcome = "ok"
        error: str | None = None
        try:
            yield
        except TransientConnectorError as exc:
            self.outcome, error = "transient", str(exc)
            raise
        except TimeoutError:
            self.outcome, error = "timeout", f"no answer within {CONNECTOR_TIMEOUT_SECONDS:.0f} s"
            raise
        except OutcomeUnknownError as exc:
            self.outcome, error = "unknown", str(exc)
            raise
        except ConnectorError as exc:
            self.outcome, error = "permanent", str(exc)
            raise
        except Exception as exc:
            self.outcome, error = "error", _unexpected(exc)
            raise
        finally:
            self.recorded.append((self._number, kind, self.outcome, error))


def action_executed_event(
    in_hand: ExecutionInHand, status: str, result: dict[str, Any], finished_at: datetime
) -> ActionExecuted:
    """The event of a booked execution, carrying what the booking had in hand so subscribers need not read."""
    proposed, intent = in_hand.action, in_hand.intent
    assert proposed.id is not None
    snapshot = ExecutedAction(
        name=proposed.name,
        params=proposed.params,
        run_id=proposed.run_id,
        compensates=proposed.compensates,
        team_id=intent.team_id,
        channel=intent.channel,
        thread_ts=intent.thread_ts,
        requester=intent.user,
        status=status,
        result=result,
        finished_at=finished_at,
        approvers=in_hand.approvers,
        allowed_by_rule=in_hand.allowed_by_rule,
    )
    return ActionExecuted(proposed.id, in_hand.execution_id, snapshot)
