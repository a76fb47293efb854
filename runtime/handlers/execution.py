"""Approved actions run once: the idempotency key is claimed, the connector is retried on transient errors."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

import stamina
import structlog
from pydantic_core import to_jsonable_python

from agents.dates import describe
from agents.publishing_calendar import PublishingCalendar
from connectors.actions import Action, CmsCreateDraft, CmsPublish, safe_inverse
from connectors.errors import (
    ConnectorError,
    InvalidActionError,
    OutcomeUnknownError,
    PermanentConnectorError,
    TransientConnectorError,
)
from connectors.registry import idempotency_key, params_hash
from runtime.crashpoints import crash_point
from runtime.handlers.base import HandlerBase
from runtime.handlers.content_calendar import record_planned_slot
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
from runtime.notices import Done, Thread
from runtime.observability import EXECUTIONS, action_executed, completed_run_spend
from runtime.transport import TransportError
from storage.ids import format_id
from storage.records import (
    ActionStatus,
    Execution,
    ExecutionAttempt,
    ExecutionStatus,
    Intent,
    ProposedAction,
    RunStatus,
)

log = structlog.get_logger(__name__)

CONNECTOR_TIMEOUT_SECONDS = 30.0
CONNECTOR_ATTEMPTS = 5
CONNECTOR_MAX_WAIT_SECONDS = 30.0


class Executions(HandlerBase):
    async def execute_when_cleared(self, event: ActionAllowed | ActionApproved) -> Sequence[Message]:
        return [ExecuteAction(event.action_id)]

    async def execute_action(self, command: ExecuteAction) -> Sequence[Message]:
        async with self.units() as uow:
            found = await uow.executions.action_to_execute(command.action_id)
            assert found is not None
            proposed, run, pause = found
            if proposed.status != ActionStatus.APPROVED:
                return []
            # The pause check, the capability and the claim share one transaction, so a pause or a second
            # execution cannot slip in between them.
            paused = pause is not None
            claimed = False
            if paused:
                run.status = RunStatus.PAUSED
                uow.session.add(run)
            else:
                try:
                    action = self._stored_action(proposed)
                except InvalidActionError as exc:
                    # Failed for good, so recovery does not pick the action up (and fail it) at every start.
                    await uow.runs.set_action_status(command.action_id, ActionStatus.FAILED)
                    await uow.commit()
                    return [ActionFailed(command.action_id, str(exc))]
                if (late := self._too_late(action)) is not None:
                    # Said before the capability is looked at: its expiry would hide why it cannot run.
                    await uow.runs.set_action_status(command.action_id, ActionStatus.FAILED)
                    await uow.commit()
                    return [ActionFailed(command.action_id, late)]
                key = idempotency_key(command.action_id, action)
                # Of any number of concurrent executions one spends the capability and claims the key; an
                # action whose parameters differ from what was approved (or whose approval is spent or stale)
                # gets neither.
                authorised = await uow.approvals.spend_capability(
                    command.action_id, action.name, params_hash(action), self.clock()
                )
                claimed = authorised and await uow.insert_if_absent(
                    Execution,
                    {
                        "action_id": command.action_id,
                        "idempotency_key": key,
                        "status": ExecutionStatus.STARTED,
                        "result": {},
                        "started_at": self.clock(),
                        "owner": self.lease.id,
                    },
                )
            if paused or claimed:
                await uow.commit()
        if paused:
            thread, _ = await self._thread_of_action(command.action_id)
            await self._say(
                thread,
                f":double_vertical_bar: {format_id('A', command.action_id)} is approved, but the {run.agent} agent "
                "is paused; it runs when the agent is resumed.",
            )
            return []
        if not claimed:
            await self._unauthorised(command.action_id)
            return []
        crash_point("execution_claimed")
        return await self._run(command.action_id, action, key, lookup_first=False)

    def _stored_action(self, proposed: ProposedAction) -> Action:
        """The typed action of stored parameters; whatever goes wrong reading them is an InvalidActionError."""
        try:
            return self.registry.validate(proposed.name, proposed.params)
        except InvalidActionError:
            raise
        except Exception as exc:
            log.exception("stored_action_unreadable", action=proposed.id, error_type=type(exc).__name__)
            raise InvalidActionError(f"{proposed.name}: its stored parameters could not be read") from exc

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
        async with self.units() as uow:
            execution = await uow.get(Execution, command.execution_id)
            proposed = await uow.get(ProposedAction, execution.action_id) if execution else None
        if execution is None or proposed is None or execution.status != ExecutionStatus.STARTED:
            return []
        try:
            action = self._stored_action(proposed)
        except InvalidActionError as exc:
            # Settled as failed, so the next start does not try (and fail) again.
            await self._finish_execution(
                execution.idempotency_key, ExecutionStatus.FAILED, {}, str(exc), _Attempts()
            )
            # It was in flight when the process stopped: the connector may have done it before.
            return [ActionFailed(execution.action_id, str(exc), certainly_undone=False)]
        log.info("execution_reconciling", execution=execution.id, action=proposed.id)
        return await self._run(proposed.id or 0, action, execution.idempotency_key, lookup_first=True)

    async def _run(
        self, action_id: int, action: Action, key: str, *, lookup_first: bool
    ) -> Sequence[Message]:
        """Call the connector (retrying transient failures, each attempt recorded) and book the outcome."""
        attempts = _Attempts()
        try:
            result = await self._lookup(action, key, attempts) if lookup_first else None
            if result is None and (late := self._too_late(action)) is not None:
                await self._finish_execution(key, ExecutionStatus.FAILED, {}, late, attempts)
                self._count(action, "failed")
                return [ActionFailed(action_id, late, certainly_undone=True)]
            if result is None:
                result = await self._execute(action, key, attempts)
        except (ConnectorError, TimeoutError) as exc:
            error = str(exc) or type(exc).__name__
            await self._finish_execution(key, ExecutionStatus.FAILED, {}, error, attempts)
            self._count(action, "failed")
            return [
                ActionFailed(
                    action_id,
                    error,
                    certainly_undone=isinstance(exc, PermanentConnectorError | InvalidActionError),
                )
            ]
        except Exception as exc:
            # A bug in a connector (a KeyError, a database error, …) ends the execution like a refusal would:
            # failed, with its attempts, and earlier steps compensated. People get plain words; the log the rest.
            log.exception(
                "connector_failed_unexpectedly",
                action=action_id,
                error_type=type(exc).__name__,
                error=_short(str(exc)),
            )
            await self._finish_execution(key, ExecutionStatus.FAILED, {}, _unexpected(exc), attempts)
            self._count(action, "failed")
            return [
                ActionFailed(
                    action_id,
                    f"the {action.name} connector stopped with an unexpected error",
                    certainly_undone=False,
                )
            ]
        crash_point("connector_done")
        booked = await self._finish_execution(key, ExecutionStatus.SUCCEEDED, result, None, attempts)
        self._count(action, "succeeded")
        assert booked is not None
        return [booked]

    def _too_late(self, action: Action) -> str | None:
        """A publish is checked against the clock again as it runs: an approval given after its time, or outside
        the publishing windows, must not put the post out at once, unannounced. So is a planned draft: a slot
        whose day has gone would be planned in the past."""
        now = self.clock()
        if (
            isinstance(action, CmsCreateDraft)
            and action.planned_for is not None
            and action.planned_for <= now
        ):
            return (
                f"its slot was {describe(action.planned_for, self.zone)}, and the time passed before it could "
                "run; plan the post again on a day to come"
            )
        if not isinstance(action, CmsPublish):
            return None
        if action.publish_at is not None and action.publish_at <= now:
            return (
                f"it was to go out {describe(action.publish_at, self.zone)}, and the time passed before it could "
                "run; ask again with a later time"
            )
        calendar = PublishingCalendar(self.zone, self.policy.document.publishing.windows, self.clock)
        refusal = calendar.refusal(action)
        return f"{refusal}, so it was not published; ask again" if refusal is not None else None

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

    async def _finish_execution(
        self,
        key: str,
        status: ExecutionStatus,
        result: dict[str, object],
        error: str | None,
        attempts: _Attempts,
    ) -> ActionExecuted | None:
        """Book the outcome, the attempts that led to it, and the action's new state in one transaction; a
        success comes back as the event that tells of it, with what its subscribers need to know."""
        async with self.units() as uow:
            found = await uow.executions.execution_in_hand(key)
            assert found is not None
            execution, proposed, run, intent = found.execution, found.action, found.run, found.intent
            assert execution.id is not None and proposed.id is not None and run.id is not None
            for number, kind, outcome, attempt_error in attempts.recorded:
                uow.session.add(
                    ExecutionAttempt(
                        execution_id=execution.id,
                        number=number,
                        kind=kind,
                        outcome=outcome,
                        error=attempt_error,
                    )
                )
            execution.status = status
            # A result that is not JSON (a connector bug) would fail the commit and leave the execution in flight.
            execution.result = to_jsonable_python(result, fallback=str)
            execution.error = error
            execution.finished_at = finished = self.clock()
            uow.session.add(execution)
            succeeded = status == ExecutionStatus.SUCCEEDED
            await uow.runs.set_action_status(
                execution.action_id, ActionStatus.EXECUTED if succeeded else ActionStatus.FAILED
            )
            if not succeeded:
                await uow.commit()
                return None
            await record_due_publish(uow, self.registry, self.zone, execution.action_id, result)
            await record_planned_slot(uow, self.registry, self.zone, execution.action_id)
            approvers, rule = await uow.runs.allowed_by(proposed.id)
            # The run's state as the action's new status left it (refreshed into the run in hand); its model
            # spend was read with the execution, in this transaction.
            spent = found.model_spend if run.status == RunStatus.COMPLETED else None
            await uow.commit()
        if spent is not None:
            completed_run_spend(spent)
        return action_executed_event(proposed, intent, execution, finished, approvers, rule)

    async def report_execution(self, event: ActionExecuted) -> Sequence[Message]:
        executed = event.action
        thread = Thread(executed.channel, executed.thread_ts)
        action = self.registry.validate(executed.name, executed.params)
        details = ", ".join(f"{k}: {v}" for k, v in executed.result.items() if k != "replayed")
        action_ref = format_id("A", event.action_id)
        done = Done(
            f":white_check_mark: Done: {escape(self._told_summary(action))}. ({escape(details)})",
            f"`{format_id('E', event.execution_id)}` · `{action_ref}` · `/aios why {action_ref}` explains it",
            undo=action_ref if safe_inverse(action, executed.result) is not None else None,
        )
        try:
            await self.transport.report_done(thread, done)
        except TransportError as exc:
            log.error("reply_not_delivered", channel=thread.channel, thread=thread.ts, error=str(exc))
        return []

    async def report_failure(self, event: ActionFailed) -> Sequence[Message]:
        thread, proposed = await self._thread_of_action(event.action_id)
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
    proposed: ProposedAction,
    intent: Intent,
    execution: Execution,
    finished_at: datetime,
    approvers: tuple[str, ...],
    allowed_by_rule: str | None,
) -> ActionExecuted:
    """The event of a booked execution, carrying what the booking had in hand so subscribers need not read."""
    assert proposed.id is not None and execution.id is not None
    snapshot = ExecutedAction(
        name=proposed.name,
        params=proposed.params,
        run_id=proposed.run_id,
        compensates=proposed.compensates,
        team_id=intent.team_id,
        channel=intent.channel,
        thread_ts=intent.thread_ts,
        requester=intent.user,
        status=execution.status,
        result=execution.result,
        finished_at=finished_at,
        approvers=approvers,
        allowed_by_rule=allowed_by_rule,
    )
    return ActionExecuted(proposed.id, execution.id, snapshot)
