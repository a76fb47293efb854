"""When a step of a multi-action run fails, the steps that already ran are undone, newest first.

An action that declares an inverse (publishing ↔ unpublishing) is undone by running that inverse, recorded like
any action; one that cannot be undone (a refund) is handed to a person instead. Compensations are not gated by
approval (they restore a state someone already accepted) but still run once, with a capability and a key."""

from __future__ import annotations

from collections.abc import Sequence

import structlog

from connectors.actions import Action, safe_inverse
from runtime.handlers.base import HandlerBase
from runtime.messagebus import Message
from runtime.messages import ActionExecuted, ActionFailed, ExecuteAction
from runtime.mrkdwn import escape
from runtime.observability import COMPENSATIONS, ESCALATIONS
from storage.ids import format_id
from storage.records import ActionStatus, Decision, ProposedAction
from storage.unit_of_work import UnitOfWork

log = structlog.get_logger(__name__)


class Compensation(HandlerBase):
    async def compensate(self, event: ActionFailed) -> Sequence[Message]:
        async with self.units() as uow:
            failed = await uow.get(ProposedAction, event.action_id)
            if failed is not None and failed.compensates is not None:
                COMPENSATIONS.labels(outcome="failed").inc()
            if failed is None or failed.id is None or failed.compensates is not None:
                return []  # a failed compensation is reported, not compensated in turn
            earlier = [
                action
                for action in await uow.runs.actions_for_run(failed.run_id)
                if action.status == ActionStatus.EXECUTED
                and action.compensates is None
                and (action.id or 0) < failed.id
            ]
            results: dict[int | None, dict[str, object]] = {}
            for action in earlier:
                done = [
                    e
                    for e in await uow.executions.executions_for_action(action.id or 0)
                    if e.status == "succeeded"
                ]
                results[action.id] = done[0].result if done else {}
        followups: list[Message] = []
        for action in reversed(earlier):  # newest first
            assert action.id is not None
            inverse = self._inverse(action, results[action.id])
            if inverse is None:
                if not await self._hand_to_a_person(action, failed):
                    break
                continue
            async with self.units() as uow:
                if await self._done_after_all(uow, failed.id, action.id):
                    break
                undo = await uow.add(
                    ProposedAction(
                        run_id=action.run_id,
                        name=inverse.name,
                        params=inverse.model_dump(mode="json"),
                        rationale=f"Undo {format_id('A', action.id)} because {format_id('A', failed.id)} failed.",
                        status=ActionStatus.APPROVED,
                        compensates=action.id,
                    )
                )
                await uow.add(
                    Decision(
                        action_id=undo.id or 0,
                        kind="compensation",
                        verdict="allow",
                        rule_id="compensation",
                        policy_hash=self.policy.hash,
                        actor="system",
                        reason=f"a later step ({format_id('A', failed.id)}) of the run failed",
                    )
                )
                await uow.approvals.mint_capability(self._capability(undo, self.policy.hash, "compensation"))
                await uow.commit()
            log.info("compensating", action=action.id, undo=undo.id, failed=failed.id)
            assert undo.id is not None
            followups.append(ExecuteAction(undo.id))
        return followups

    async def mark_compensated(self, event: ActionExecuted) -> Sequence[Message]:
        compensated = event.action.compensates
        if compensated is None:
            return []
        async with self.units() as uow:
            await uow.runs.set_action_status(compensated, ActionStatus.COMPENSATED)
            await uow.commit()
        COMPENSATIONS.labels(outcome="undone").inc()
        return []

    def _inverse(self, action: ProposedAction, result: dict[str, object]) -> Action | None:
        """The undo of a step that ran, or None when there is none, or when its stored parameters can no
        longer be read: then a person decides, rather than the remaining steps staying undone."""
        try:
            original = self.registry.validate(action.name, action.params)
        except Exception:
            log.exception("inverse_unavailable", action=action.id)
            return None
        return safe_inverse(original, dict(result))

    def _summary(self, action: ProposedAction) -> str:
        try:
            return self.registry.validate(action.name, action.params).summary()
        except Exception:
            return action.name

    @staticmethod
    async def _done_after_all(uow: UnitOfWork, failed: int, step: int) -> bool:
        """Whether the failed action is no longer failed: booked done after all (a take-over told it failed while
        the connector's try was landing), or since undone in turn. Then the earlier steps stand, from ``step`` on."""
        if await uow.runs.lock_action_status(failed) == ActionStatus.FAILED:
            return False
        log.info("compensation_stopped", failed=failed, kept=step)
        return True

    async def _hand_to_a_person(self, action: ProposedAction, failed: ProposedAction) -> bool:
        """False, and nothing done, when the failed action was booked done after all meanwhile."""
        assert action.id is not None and failed.id is not None
        summary = self._summary(action)
        async with self.units() as uow:
            if await self._done_after_all(uow, failed.id, action.id):
                return False
            await uow.runs.set_action_status(action.id, ActionStatus.ESCALATED)
            await uow.add(
                Decision(
                    action_id=action.id,
                    kind="escalation",
                    verdict="escalated",
                    actor="system",
                    reason=f"{format_id('A', failed.id)} failed and {action.name} cannot be undone automatically",
                )
            )
            await uow.commit()
        COMPENSATIONS.labels(outcome="handed_to_a_person").inc()
        ESCALATIONS.labels(reason="cannot_undo").inc()
        people = self._mention_roles(self.policy.document.default_approvers)
        thread, _ = await self._thread_of_action(action.id)
        await self._say(
            thread,
            f":rotating_light: {people} {format_id('A', action.id)} ({escape(summary)}) already ran, but "
            f"{format_id('A', failed.id)} failed after it and {action.name} cannot be undone automatically. "
            "Please decide what to do.",
            context=f"`{format_id('A', action.id)}` · `/aios why {format_id('A', action.id)}`",
        )
        return True
