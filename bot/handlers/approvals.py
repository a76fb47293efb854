"""Approval clicks: who may decide, a compare-and-set so one click wins, refusals said only to the clicker."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import structlog

from bot.handlers.base import HandlerBase, Thread
from bot.messagebus import Message
from bot.messages import (
    ActionApproved,
    DecideApproval,
)
from bot.observability import DECISIONS
from policies.approvers import ApprovalRequestView, Refusal, authorise_approval, group_ids
from storage.ids import format_id
from storage.records import (
    ActionStatus,
    Approval,
    ApprovalStatus,
    Decision,
)

log = structlog.get_logger(__name__)

REFUSAL_TEXT = {
    Refusal.ALREADY_DECIDED: "{approval} was already decided, so your click changed nothing.",
    Refusal.EXPIRED: "{approval} has expired; ask for the action again if it is still needed.",
    Refusal.SELF_APPROVAL: "You asked for this, and rule `{rule}` does not let the requester approve it. "
    "Someone else with the {roles} role has to approve.",
    Refusal.NOT_AN_APPROVER: "Only the {roles} role can decide {approval}, and you don't have it.",
}


class Approvals(HandlerBase):
    async def decide_approval(self, command: DecideApproval) -> Sequence[Message]:
        approval_ref = format_id("AP", command.approval_id)
        async with self.units() as uow:
            approval = await uow.repo.get(Approval, command.approval_id)
        if approval is None:
            await self._whisper(command.channel, command.user, f"There is no approval {approval_ref}.")
            return []
        policy_decision = await self._get_decision(approval.decision_id)
        roles = self.policy.roles
        groups = {g: await self.transport.group_members(g) for g in group_ids(roles, approval.approver_roles)}
        now = self.clock()
        view = ApprovalRequestView(
            status=approval.status,
            requester=approval.requester,
            approver_roles=tuple(approval.approver_roles),
            forbid_self_approval=approval.forbid_self_approval,
            expires_at=approval.expires_at,
        )
        refusal = authorise_approval(
            view, command.user, approve=command.approve, roles=roles, group_members=groups, now=now
        )
        if refusal is Refusal.EXPIRED:
            await self._expire(approval, now)
        if refusal is not None:
            await self._refuse(approval, command, refusal, policy_decision.rule_id or "default")
            return []

        outcome = ApprovalStatus.APPROVED if command.approve else ApprovalStatus.REJECTED
        async with self.units() as uow:
            if not await uow.repo.decide_approval(approval.id or 0, outcome, command.user, now):
                won = False
            else:
                won = True
                await uow.repo.set_action_status(
                    approval.action_id, ActionStatus.APPROVED if command.approve else ActionStatus.REJECTED
                )
                await uow.repo.add(
                    Decision(
                        action_id=approval.action_id,
                        kind="human",
                        verdict=outcome.value,
                        rule_id=policy_decision.rule_id,
                        policy_hash=policy_decision.policy_hash,
                        justification=f"{outcome.value} in Slack by <@{command.user}>",
                        actor=command.user,
                    )
                )
                await uow.commit()
        if not won:
            # Another click won the compare-and-set between our read and our write.
            await self._refuse(
                approval, command, Refusal.ALREADY_DECIDED, policy_decision.rule_id or "default"
            )
            return []
        DECISIONS.labels(verdict=outcome.value).inc()
        log.info("approval_decided", approval=approval.id, outcome=outcome.value, user=command.user)
        await self._close_card(approval, outcome.value, command.user, now)
        if command.approve:
            return [ActionApproved(approval.action_id)]
        await self._say(
            Thread(approval.channel, approval.thread_ts),
            f":no_entry_sign: <@{command.user}> rejected {approval_ref}; nothing was done.",
            context=f"`{format_id('A', approval.action_id)}`",
        )
        return []

    async def _refuse(
        self, approval: Approval, command: DecideApproval, refusal: Refusal, rule_id: str
    ) -> None:
        text = REFUSAL_TEXT[refusal].format(
            approval=format_id("AP", approval.id), rule=rule_id, roles=" or ".join(approval.approver_roles)
        )
        async with self.units() as uow:
            await uow.repo.add(
                Decision(
                    action_id=approval.action_id,
                    kind="refusal",
                    verdict=f"refused:{refusal.value}",
                    rule_id=rule_id,
                    reason=text,
                    actor=command.user,
                )
            )
            await uow.commit()
        DECISIONS.labels(verdict="refused").inc()
        await self._whisper(approval.channel, command.user, text, thread_ts=approval.thread_ts)

    async def _expire(self, approval: Approval, now: datetime) -> None:
        async with self.units() as uow:
            if not await uow.repo.decide_approval(approval.id or 0, ApprovalStatus.EXPIRED, "clock", now):
                return
            await uow.repo.set_action_status(approval.action_id, ActionStatus.EXPIRED)
            await uow.repo.add(
                Decision(
                    action_id=approval.action_id,
                    kind="expiry",
                    verdict="expired",
                    actor="clock",
                    reason="nobody decided before the rule's timeout",
                )
            )
            await uow.commit()
        await self._close_card(approval, "expired", None, now)
