"""At start, every run carries on from its last checkpoint.

The checkpoints are rows: an intent not yet planned, a run planned to nothing, an approval whose card was
never posted, an approved action never claimed, an execution claimed but never settled, a click acknowledged
but never handled. Each is handed to the handler that owns that step; every such step is idempotent, so
recovering twice (or from two replicas) does nothing twice. Work younger than the grace period may belong to a
live replica and is left alone, except where a claim already makes a duplicate harmless (intents, unclaimed
actions, clicks).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import structlog

from bot.handlers.base import HandlerBase, Thread
from bot.messagebus import Message
from bot.messages import DecideApproval, ExecuteAction, HandleIntent, ReconcileExecution, Recover, ReplanRun
from storage.records import Decision, ProposedAction, utcnow

log = structlog.get_logger(__name__)


class Recovery(HandlerBase):
    async def recover(self, command: Recover) -> Sequence[Message]:
        stale_before = utcnow() - timedelta(seconds=command.grace_seconds)
        async with self.units() as uow:
            repo = uow.repo
            intents = await repo.intents_with_status("received")
            stalled_runs = await repo.runs_planning_without_actions(stale_before)
            unposted = await repo.approvals_without_message(stale_before)
            unclaimed = await repo.approved_actions_without_execution()
            in_flight = await repo.executions_in_flight(stale_before)
            # No grace for clicks: deciding an approval is a compare-and-set, so a click a live replica is
            # handling right now is only counted once.
            clicks = await repo.unprocessed_clicks()
        log.info(
            "recovering",
            intents=len(intents),
            runs=len(stalled_runs),
            cards=len(unposted),
            actions=len(unclaimed),
            executions=len(in_flight),
            clicks=len(clicks),
        )
        for approval in unposted:
            assert approval.id is not None
            async with self.units() as uow:
                proposed = await uow.repo.get(ProposedAction, approval.action_id)
                decision = await uow.repo.get(Decision, approval.decision_id)
            assert proposed is not None and decision is not None
            await self._post_card(
                approval.id,
                self._card(approval, proposed, decision),
                Thread(approval.channel, approval.thread_ts),
            )
        return [
            *(HandleIntent(intent.id) for intent in intents if intent.id is not None),
            *(ReplanRun(run.id) for run in stalled_runs if run.id is not None),
            *(ExecuteAction(action_id) for action_id in unclaimed),
            *(ReconcileExecution(execution.id) for execution in in_flight if execution.id is not None),
            *(
                DecideApproval(c.approval_id, c.user, c.approve, c.channel, click_id=c.id, recovered=True)
                for c in clicks
            ),
        ]
