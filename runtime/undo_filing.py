"""A claimed undo, filed as a proposal of the original action's inverse (the `ProposeAction` path): by the front
door that took the request, or by recovery for a claim whose process stopped before filing it (`refile`)."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from connectors.actions import Action, safe_inverse
from connectors.registry import ConnectorRegistry
from runtime.messages import ProposeAction
from storage.ids import format_id
from storage.records import Execution, ExecutionStatus, ProposedAction, Run
from storage.unit_of_work import UnitOfWork, UnitOfWorkFactory

log = structlog.get_logger(__name__)

SOURCE = "undo"  # the source of a request's intent: recovery files it again rather than planning its text


@dataclass(frozen=True)
class UndoFiling:
    """A claimed undo, ready to be proposed: the request's intent and the inverse action."""

    intent_id: int
    agent: str
    original: int
    inverse: Action
    requester: str


def proposal(filing: UndoFiling) -> ProposeAction:
    return ProposeAction(
        filing.intent_id,
        filing.agent,
        filing.inverse.name,
        filing.inverse.model_dump(mode="json"),
        f"{filing.requester} asked to undo {format_id('A', filing.original)}.",
        undoes=filing.original,
    )


async def refile(
    units: UnitOfWorkFactory, registry: ConnectorRegistry, intent_id: int
) -> ProposeAction | None:
    """The proposal of a claimed undo whose process stopped before filing it (recovery), or None, with the
    request ended so that it may be asked for again, when the action can no longer be undone."""
    async with units() as uow:
        request = await uow.undos.request_of_intent(intent_id)
        original = await uow.get(ProposedAction, request.action_id) if request else None
        run = await uow.get(Run, original.run_id) if original else None
        result = await succeeded_result(uow, original.id) if original and original.id else None
        inverse = inverse_of(registry, original, result)[0] if original and result is not None else None
        if request is None or run is None or inverse is None:
            await uow.runs.fail_intent(intent_id)
            await uow.commit()
            log.warning("undo_not_refiled", intent=intent_id)
            return None
    return proposal(UndoFiling(intent_id, run.agent, request.action_id, inverse, request.requested_by))


async def succeeded_result(uow: UnitOfWork, action_id: int) -> dict[str, object] | None:
    """What the action's successful execution returned, or None when it has not succeeded."""
    executions: list[Execution] = list(await uow.executions.executions_for_action(action_id))
    done = [e for e in executions if e.status == ExecutionStatus.SUCCEEDED]
    return done[0].result if done else None


def inverse_of(
    registry: ConnectorRegistry, original: ProposedAction, result: dict[str, object]
) -> tuple[Action | None, str]:
    """The inverse and the summary of the original; no inverse when its stored parameters cannot be read."""
    try:
        action = registry.validate(original.name, original.params)
    except Exception:
        log.exception("undo_action_unreadable", action=original.id)
        return None, original.name
    return safe_inverse(action, dict(result)), action.summary()
