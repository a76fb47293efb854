"""A rejection's reason: recorded on the action, said in the thread, and planned once more with the agent.

The stored reason is the inbox: until it is settled a restart hands it here again (see Recovery), and each step
is a compare-and-set on it, so nothing is recorded, told or planned twice. Its revision is a new run of the same
intent and agent, planned with the reviewer's words as feedback (each time it is planned: see
:mod:`runtime.revision_feedback`) by the one process that claims it, the reason's owner; its proposals go to the
policy and to people like any other. A budget grant's rejection, or an undo's, is recorded and not planned again.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import structlog

from connectors.budget import BudgetGrant
from policies.approvers import authorise_approval, group_ids
from runtime.approval_requests import request_view
from runtime.handlers.base import Collaborators, HandlerBase
from runtime.handlers.planning import Planning
from runtime.messagebus import Message
from runtime.messages import ReviseRejected
from runtime.mrkdwn import escape
from runtime.notices import Thread
from storage.ids import format_id
from storage.records import (
    Approval,
    ApprovalStatus,
    Decision,
    Intent,
    ProposedAction,
    RejectionReason,
    Run,
    RunStatus,
)
from storage.rejection_reasons import RejectionReasons

log = structlog.get_logger(__name__)

# How long a reason waits for the Reject click it follows to be decided (the dialog can be quicker than the
# click's handling); past it the reason is left for the next start, which decides stored clicks first.
REJECTION_WAIT_SECONDS = 10.0
_POLL_SECONDS = 0.1


class Revisions(HandlerBase):
    def __init__(self, collaborators: Collaborators, planning: Planning) -> None:
        super().__init__(collaborators)
        self.planning = planning

    async def may_reject(self, approval: Approval, user: str) -> bool:
        """Whether ``user``'s Reject of the approval can count now: the check its click will meet, made before
        a reason is asked for or kept (a reason from someone whose Reject is refused would hold its place)."""
        if approval.status == ApprovalStatus.REJECTED:
            return approval.decided_by == user
        view, now, roles = request_view(approval), self.clock(), self.policy.roles
        # Only the groups that can decide it: the dialog is opened after this, within the trigger id's 3 s.
        groups = {
            g: await self.transport.group_members(g) for g in group_ids(roles, view.deciding_roles(now))
        }
        return (
            authorise_approval(view, user, approve=False, roles=roles, group_members=groups, now=now) is None
        )

    async def revise(self, command: ReviseRejected) -> Sequence[Message]:
        approval = await self._rejection(command)
        if approval is None:
            return []
        reason = await self._reason(command.reason_id)
        assert reason.id is not None
        async with self.units() as uow:
            proposed = await uow.get(ProposedAction, approval.action_id)
            run = await uow.get(Run, proposed.run_id) if proposed else None
            intent = await uow.get(Intent, run.intent_id) if run else None
        assert proposed is not None and run is not None and intent is not None
        await self._tell(approval, reason)
        if (
            proposed.name == BudgetGrant.name
            or proposed.undoes_action_id is not None
            or proposed.compensates is not None
            or run.agent not in self.dispatcher.agents
        ):
            # Nothing to plan again: a grant is asked for by a button, an undo or a compensation is no plan.
            await self._settle(reason.id, "recorded")
            return []
        revision_id = await self._revision_run(reason, run)
        if await self._planned(revision_id):
            await self._settle(reason.id, "revised")  # planned by a process that stopped before settling
            return []
        if not await self._claim(reason.id, revision_id):
            return []  # a live process (maybe this one) is planning it, and settles it
        log.info("rejection_revising", approval=approval.id, run=revision_id, recovered=command.recovered)
        followups = await self.planning.plan_run(intent, revision_id)
        await self._settle(reason.id, "revised")
        return followups

    async def _rejection(self, command: ReviseRejected) -> Approval | None:
        """The approval, once rejected by whoever gave the reason; None when there is nothing (more) to do. A
        Reject click of theirs still waiting to be handled is waited for, briefly."""
        waited = 0.0
        while True:
            # One snapshot for the three reads: on PostgreSQL a decision committed between reading the approval
            # (still pending) and its clicks (the Reject now handled) would read as a Reject that did not count.
            async with self.units.read() as uow:
                reason = await uow.get(RejectionReason, command.reason_id)
                approval = await uow.get(Approval, command.approval_id)
                clicked = await RejectionReasons(uow.session).rejecting_clicks(command.approval_id)
            if reason is None or reason.processed_at is not None or approval is None:
                return None
            if approval.status == ApprovalStatus.REJECTED and approval.decided_by == reason.user:
                return approval
            if approval.status != ApprovalStatus.PENDING or reason.user not in clicked:
                await self._not_rejected(reason, approval, command.channel)
                return None
            if waited >= REJECTION_WAIT_SECONDS:
                log.warning("rejection_reason_waits_for_click", approval=approval.id, reason=reason.id)
                return None
            await asyncio.sleep(_POLL_SECONDS)
            waited += _POLL_SECONDS

    async def _not_rejected(self, reason: RejectionReason, approval: Approval, channel: str) -> None:
        """The click the reason followed did not reject the approval (it was refused, or someone decided first):
        the reason is deleted, so the approval's one reason stays free for whoever did reject it, and its author
        is told why."""
        assert reason.id is not None
        async with self.units() as uow:
            forgotten = await RejectionReasons(uow.session).forget(reason.id)
            await uow.commit()
        if not forgotten:
            return
        ref = format_id("AP", approval.id)
        if approval.status == ApprovalStatus.REJECTED:
            outcome = f"{ref} was rejected by <@{approval.decided_by}>"
        elif approval.status == ApprovalStatus.PENDING:
            outcome = f"Your Reject of {ref} was not counted"
        else:
            outcome = f"{ref} was {approval.status}"
        await self._whisper(
            channel, reason.user, f"{outcome}, so your reason was not recorded.", thread_ts=approval.thread_ts
        )

    async def _reason(self, reason_id: int) -> RejectionReason:
        async with self.units() as uow:
            reason = await uow.get(RejectionReason, reason_id)
        assert reason is not None
        return reason

    async def _tell(self, approval: Approval, reason: RejectionReason) -> None:
        """Record the reason on the action and say it in the thread, once (the compare-and-set on the reason)."""
        assert reason.id is not None
        async with self.units() as uow:
            first = await RejectionReasons(uow.session).note(reason.id)
            if first:
                await uow.add(
                    Decision(
                        action_id=approval.action_id,
                        kind="feedback",
                        verdict="reason",
                        reason=reason.reason,
                        justification=f"why <@{reason.user}> rejected it",
                        actor=reason.user,
                    )
                )
            await uow.commit()
        if first:
            await self._say(
                Thread(approval.channel, approval.thread_ts),
                f":speech_balloon: <@{reason.user}> rejected {format_id('AP', approval.id)}: "
                f"“{escape(reason.reason)}”",
                context=f"`{format_id('A', approval.action_id)}`",
            )

    async def _revision_run(self, reason: RejectionReason, run: Run) -> int:
        """The reason's one revision run: made by the first caller (a compare-and-set), found by the others."""
        assert reason.id is not None
        async with self.units() as uow:
            revision = await uow.add(Run(intent_id=run.intent_id, agent=run.agent, owner=self.lease.id))
            assert revision.id is not None
            if await RejectionReasons(uow.session).set_revision_run(reason.id, revision.id):
                await uow.commit()
                return revision.id
        stored = await self._reason(reason.id)
        assert stored.revision_run_id is not None
        return stored.revision_run_id

    async def _claim(self, reason_id: int, run_id: int) -> bool:
        """Whether this call plans the revision: a compare-and-set of the reason's owner, from nobody or from a
        process whose lease ended. A live owner (this process too: a restart's recovery can hand a reason here
        while its first handling is still planning) keeps it, so a revision is never planned twice at once."""
        stored = await self._reason(reason_id)
        if stored.owner is not None and await self.lease.alive([stored.owner]):
            return False
        async with self.units() as uow:
            claimed = await RejectionReasons(uow.session).claim(reason_id, self.lease.id, stored.owner)
            run = await uow.get(Run, run_id) if claimed else None
            if run is not None:
                await uow.take_over([run], self.lease.id)  # so that recovery leaves it to this process
            await uow.commit()
        return claimed

    async def _planned(self, run_id: int) -> bool:
        """The revision run got past planning (proposed something, or answered)."""
        async with self.units() as uow:
            run = await uow.get(Run, run_id)
            proposed = await uow.runs.actions_for_run(run_id)
        return run is not None and (run.status != RunStatus.PLANNING or bool(proposed))

    async def _settle(self, reason_id: int, outcome: str) -> bool:
        async with self.units() as uow:
            settled = await RejectionReasons(uow.session).settle(reason_id, outcome, self.clock())
            await uow.commit()
        return settled
