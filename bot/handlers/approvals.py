"""Approval clicks: who may decide, a compare-and-set so one click wins, refusals said only to the clicker."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import structlog

from bot.crashpoints import crash_point
from bot.handlers.base import HandlerBase, Thread
from bot.messagebus import Message
from bot.messages import (
    ActionApproved,
    DecideApproval,
    SweepTimers,
)
from bot.observability import DECISIONS, ESCALATIONS, approval_decided
from bot.tracing import approval_waited
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
    Refusal.ALREADY_VOTED: "You have already approved {approval}; it needs approvals from other people too.",
}


# What a re-submitted click may find because its first handling got that far before the process stopped.
_ALREADY_COUNTED = (Refusal.ALREADY_DECIDED, Refusal.ALREADY_VOTED)


class Approvals(HandlerBase):
    async def decide_approval(self, command: DecideApproval) -> Sequence[Message]:
        """Decide, then mark the stored click processed (whatever the outcome), so a restart does not
        handle it again; until then a restart re-submits it, and deciding twice is harmless."""
        messages = await self._decide(command)
        if command.click_id is not None:
            async with self.units() as uow:
                await uow.repo.mark_click_processed(command.click_id, self.clock())
                await uow.commit()
        return messages

    async def _decide(self, command: DecideApproval) -> Sequence[Message]:
        approval_ref = format_id("AP", command.approval_id)
        async with self.units() as uow:
            approval = await uow.repo.get(Approval, command.approval_id)
        if approval is None or approval.id is None:
            await self._whisper(command.channel, command.user, f"There is no approval {approval_ref}.")
            return []
        policy_decision = await self._get_decision(approval.decision_id)
        rule_id = policy_decision.rule_id or "default"
        roles = self.policy.roles
        now = self.clock()
        view = _request_view(approval)
        groups = {
            g: await self.transport.group_members(g) for g in group_ids(roles, view.deciding_roles(now))
        }
        refusal = authorise_approval(
            view, command.user, approve=command.approve, roles=roles, group_members=groups, now=now
        )
        if refusal is Refusal.EXPIRED:
            await self._expire(approval, now)
        if refusal is not None:
            await self._refuse(approval, command, refusal, rule_id)
            return []

        outcome = ApprovalStatus.APPROVED if command.approve else ApprovalStatus.REJECTED
        voters: list[str] = []
        async with self.units() as uow:
            # The approval row is locked for the whole decision, so concurrent clicks (from any replica)
            # are counted one after another: one of them completes the quorum, the rest see it decided.
            current = await uow.repo.lock_approval(approval.id)
            if current is None or current.status != ApprovalStatus.PENDING:
                refusal = Refusal.ALREADY_DECIDED
            elif command.approve and not await uow.repo.add_vote(approval.id, command.user):
                refusal = Refusal.ALREADY_VOTED
            else:
                voters = await uow.repo.voters(approval.id) if command.approve else []
                final = not command.approve or len(voters) >= current.quorum
                if final:
                    await uow.repo.decide_approval(approval.id, outcome, command.user, now)
                    proposed = await uow.repo.set_action_status(
                        approval.action_id,
                        ActionStatus.APPROVED if command.approve else ActionStatus.REJECTED,
                    )
                    if command.approve:
                        capability = self._capability(
                            proposed, policy_decision.policy_hash or "", command.user
                        )
                        await uow.repo.mint_capability(capability)
                count = (
                    f" ({len(voters)} of {current.quorum})" if current.quorum > 1 and command.approve else ""
                )
                await uow.repo.add(
                    Decision(
                        action_id=approval.action_id,
                        kind="human",
                        verdict=outcome.value if final else "vote",
                        rule_id=policy_decision.rule_id,
                        policy_hash=policy_decision.policy_hash,
                        justification=f"{outcome.value}{count} in Slack by <@{command.user}>",
                        actor=command.user,
                    )
                )
                await uow.commit()
        if refusal is not None:
            await self._refuse(approval, command, refusal, rule_id)
            return []
        if command.approve and len(voters) < approval.quorum:
            await self._show_votes(approval, voters)
            await self._whisper(
                approval.channel,
                command.user,
                f"Counted: {approval_ref} has {len(voters)} of the {approval.quorum} approvals it needs.",
                thread_ts=approval.thread_ts,
            )
            return []
        crash_point("approval_decided")
        DECISIONS.labels(verdict=outcome.value).inc()
        approval_decided(outcome.value, approval.created_at, now)
        approval_waited(approval.id, approval.created_at, now, outcome.value)
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

    async def sweep(self, command: SweepTimers) -> Sequence[Message]:
        """The approval timers, kept in SQL: escalate what waited too long, expire what passed its deadline.

        Run at start and then every few seconds; each step is a compare-and-set, so it fires once however many
        replicas sweep."""
        now = self.clock()
        async with self.units() as uow:
            to_escalate, to_expire = await uow.repo.approvals_due(now)
        for approval in to_escalate:
            await self._escalate(approval, now)
        for approval in to_expire:
            if await self._expire(approval, now):
                await self._say(
                    Thread(approval.channel, approval.thread_ts),
                    f":hourglass: {format_id('AP', approval.id)} expired without a decision; nothing was done.",
                    context=f"`{format_id('A', approval.action_id)}`",
                )
        return []

    async def _escalate(self, approval: Approval, now: datetime) -> None:
        assert approval.id is not None
        async with self.units() as uow:
            if not await uow.repo.mark_escalated(approval.id, now):
                return
            ESCALATIONS.labels(reason="approval_timeout").inc()
            await uow.repo.add(
                Decision(
                    action_id=approval.action_id,
                    kind="escalation",
                    verdict="escalated",
                    actor="clock",
                    reason=f"no decision by the rule's timeout; escalated to {', '.join(approval.escalate_to)}",
                )
            )
            await uow.commit()
        mentions = self._mention_roles(approval.escalate_to)
        deadline = f" It expires at {approval.expires_at:%Y-%m-%d %H:%M} UTC." if approval.expires_at else ""
        await self._say(
            Thread(approval.channel, approval.thread_ts),
            f":rotating_light: {mentions} {format_id('AP', approval.id)} from <@{approval.requester}> is still "
            f"waiting for a decision, and you may now decide it.{deadline}",
            context=f"`{format_id('A', approval.action_id)}` · escalated to {', '.join(approval.escalate_to)}",
        )

    async def _refuse(
        self, approval: Approval, command: DecideApproval, refusal: Refusal, rule_id: str
    ) -> None:
        if command.recovered and refusal in _ALREADY_COUNTED:
            # Most likely this very click, counted before the process stopped: nothing to tell anyone.
            log.info("recovered_click_already_counted", approval=approval.id, click=command.click_id)
            return
        deciding = _request_view(approval).deciding_roles(self.clock())
        text = REFUSAL_TEXT[refusal].format(
            approval=format_id("AP", approval.id), rule=rule_id, roles=" or ".join(deciding)
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

    async def _expire(self, approval: Approval, now: datetime) -> bool:
        """Expire a pending approval (never approve it); False when it had been decided meanwhile."""
        async with self.units() as uow:
            if not await uow.repo.decide_approval(approval.id or 0, ApprovalStatus.EXPIRED, "clock", now):
                return False
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
        return True


def _request_view(approval: Approval) -> ApprovalRequestView:
    return ApprovalRequestView(
        status=approval.status,
        requester=approval.requester,
        approver_roles=tuple(approval.approver_roles),
        forbid_self_approval=approval.forbid_self_approval,
        expires_at=approval.expires_at,
        quorum=approval.quorum,
        escalate_to=tuple(approval.escalate_to),
        escalate_at=approval.escalate_at,
    )
