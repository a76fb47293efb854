"""Claiming an approved action's execution: the checks that hold it back, the capability, the idempotency key.

One path for both callers: the click that approves an action for good claims it in its own transaction, and
ExecuteAction claims what a click did not (a policy's allow, a paused agent resumed, recovery)."""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from agents.dates import describe
from agents.publishing_calendar import PublishingCalendar
from connectors.actions import Action, CmsCreateDraft, CmsPublish
from connectors.errors import InvalidActionError
from connectors.registry import idempotency_key, params_hash
from runtime.handlers.base import HandlerBase
from runtime.messages import ClaimedExecution
from storage.records import Capability, ProposedAction
from storage.repositories.executions import ActionToExecute, ExecutionInHand
from storage.unit_of_work import UnitOfWork

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class AgentPaused:
    """Held back: the action's agent is paused, and it runs when the agent is resumed."""


@dataclass(frozen=True)
class CannotRun:
    """Held back for good: its stored parameters are unreadable, or its time has passed."""

    reason: str


class Claims(HandlerBase):
    async def claim_in(
        self, uow: UnitOfWork, found: ActionToExecute, granted: Capability | None = None
    ) -> ClaimedExecution | AgentPaused | CannotRun | None:
        """Claim the action's execution in ``uow``, writing nothing when something holds it back. ``granted``:
        the capability its approval grants in this same transaction, minted spent; without it the action's stored
        capability is spent. None: no capability to spend (already spent, expired, or for other parameters), or
        the key was claimed before."""
        if found.pause is not None:
            return AgentPaused()
        try:
            action = self.stored_action(found.action)
        except InvalidActionError as exc:
            return CannotRun(str(exc))
        if (late := self.too_late(action)) is not None:
            # Said before the capability is looked at: its expiry would hide why it cannot run.
            return CannotRun(late)
        action_id = found.action.id or 0
        now = self.clock()
        # Of any number of concurrent executions one spends the capability and claims the key; an action whose
        # parameters differ from what was approved (or whose approval is spent or stale) gets neither.
        if granted is not None:
            authorised = await uow.approvals.mint_capability(granted, spent_at=now)
        else:
            authorised = await uow.approvals.spend_capability(
                action_id, action.name, params_hash(action), now
            )
        if not authorised:
            return None
        key = idempotency_key(action_id, action)
        execution_id = await uow.executions.claim(action_id, key, now, self.lease.id)
        if execution_id is None:
            return None
        # What the claim has in hand goes on to the booking, which reads none of it again.
        in_hand = ExecutionInHand(
            execution_id, key, found.action, found.intent, found.approvers, found.allowed_by_rule
        )
        return ClaimedExecution(in_hand, action)

    def stored_action(self, proposed: ProposedAction) -> Action:
        """The typed action of stored parameters; whatever goes wrong reading them is an InvalidActionError."""
        try:
            return self.registry.validate(proposed.name, proposed.params)
        except InvalidActionError:
            raise
        except Exception as exc:
            log.exception("stored_action_unreadable", action=proposed.id, error_type=type(exc).__name__)
            raise InvalidActionError(f"{proposed.name}: its stored parameters could not be read") from exc

    def too_late(self, action: Action) -> str | None:
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
