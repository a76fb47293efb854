"""At start, and every few seconds, work whose process died carries on from its last checkpoint.

The checkpoints are rows: an intent not yet planned, a run planned to nothing, an approval whose card (or an
escalation whose message) was never posted, an approved action never claimed, an execution claimed but never
settled, a click (or an edit, or a rejection's reason) acknowledged but never handled. Each is handed to the
handler that owns that step; every such step is idempotent, so recovering twice (or from two replicas) does
nothing twice.

Intents, runs, executions, clicks and edits record the lease of the process working on them (see
:mod:`storage.leases`).
Work whose owner's lease has ended is taken over at once, by a compare-and-set on its owner so that one
process takes it; work of a live process is left to it. Rows that name no owner (from before owners were
recorded) keep the grace period: younger than it, they may belong to a live replica. At start approved actions
need no grace, since a claim already makes a duplicate harmless. An intent that names no owner was stored for the
workers to claim: a worker's sweeps leave it to its claim loop, which also plans the intents recovery takes over
for it (a few at a time, never a backlog inside the sweep); a process without that loop takes it at start, and in
its sweeps once it is older than the grace period.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import structlog

from runtime.handlers.base import Collaborators, HandlerBase
from runtime.handlers.escalation import ask_in_thread
from runtime.handlers.run_review import RunReviews
from runtime.messagebus import Message
from runtime.messages import (
    DecideApproval,
    DecideRun,
    EditApproval,
    ExecuteAction,
    HandleIntent,
    ReconcileExecution,
    Recover,
    ReplanRun,
    ReviseRejected,
)
from runtime.notices import Thread
from runtime.undo_filing import SOURCE as UNDO_SOURCE
from runtime.undo_filing import refile
from storage.action_edits import ActionEdits
from storage.escalations import Escalations
from storage.records import (
    ActionEdit,
    Approval,
    Click,
    Decision,
    Execution,
    Intent,
    ProposedAction,
    RejectionReason,
    Run,
    utcnow,
)
from storage.rejection_reasons import RejectionReasons

log = structlog.get_logger(__name__)


class Recovery(HandlerBase):
    def __init__(self, collaborators: Collaborators) -> None:
        super().__init__(collaborators)
        self.reviews = RunReviews(collaborators)

    async def recover(self, command: Recover) -> Sequence[Message]:
        now = utcnow()
        stale_before = now - timedelta(seconds=command.grace_seconds)
        # Read without the writer lock: SQLite's acks would otherwise wait behind these reads every few seconds.
        # Whatever is taken over is taken by a compare-and-set on its owner, in the write that follows.
        async with self.units.read() as uow:
            # Where a claim loop runs, the intents that name no owner are its own to claim (see stranded()).
            intents = await uow.runs.unplanned_intents(self.lease.id, unowned=not command.claim_loop)
            planning = await uow.runs.runs_planning_without_actions(now)
            unposted = await uow.approvals.approvals_without_message(now)
            unasked = await Escalations(uow.session).unasked(now)  # escalations never posted
            unclaimed = await uow.executions.approved_actions_without_execution()
            in_flight = await uow.executions.executions_in_flight(now)
            run_of = await uow.runs.runs_of_actions([approval.action_id for approval in unposted] + unclaimed)
            clicks = await uow.approvals.unprocessed_clicks()
            edits = await ActionEdits(uow.session).unprocessed()  # as clicks
            # Reasons too (after the clicks they follow); a revision run is planned again only with its reason.
            reasons = RejectionReasons(uow.session)
            unsettled = await reasons.unprocessed()
            revising = await reasons.revising([run.id for run in planning if run.id is not None])
        owned: list[Intent | Run | Execution | Click | ActionEdit] = [
            *intents,
            *planning,
            *in_flight,
            *run_of.values(),
            *(run for _, run in unasked),
            *clicks,
            *edits,
        ]
        alive = await self.lease.alive(row.owner for row in owned if row.owner is not None)

        def orphaned(
            row: Intent | Run | Execution | Click | ActionEdit, since: datetime | None = None
        ) -> bool:
            """Its owner is gone; or it names none and is older than the grace period (or needs no grace)."""
            if row.owner is None:
                return since is None or since < stale_before
            return row.owner not in alive

        def stranded(intent: Intent) -> bool:
            """One that names no owner was stored by a front door for the workers to claim: where a claim loop
            runs it is the loop's alone; elsewhere it is taken at start, and later once older than the grace
            period (a worker may claim it yet)."""
            if intent.owner is not None:
                return intent.owner not in alive
            if command.claim_loop:
                return False
            return command.at_start or intent.created_at < stale_before

        orphaned_runs = [run for run in planning if orphaned(run, run.updated_at)]
        orphaned_runs += [
            run_of[a.action_id] for a in unposted if orphaned(run_of[a.action_id], a.created_at)
        ]
        orphaned_runs += [run_of[action_id] for action_id in unclaimed if orphaned(run_of[action_id])]
        orphaned_runs += [run for escalation, run in unasked if orphaned(run, escalation.created_at)]
        left_intents = [i for i in intents if stranded(i)]
        left_executions = [e for e in in_flight if orphaned(e, e.started_at)]
        # A click (or an edit) is decided by the process that stored it, which a dead one never will.
        left_clicks = [c for c in clicks if orphaned(c, c.received_at)]
        left_edits = [e for e in edits if orphaned(e, e.received_at)]
        nothing: set[int] = set()  # only read below
        taken_intents = taken_runs = taken_executions = taken_clicks = taken_edits = nothing
        # Most sweeps find nothing to take, and then take no writer lock at all.
        if left_intents or orphaned_runs or left_executions or left_clicks or left_edits:
            async with self.units() as uow:
                taken_intents = await uow.take_over(left_intents, self.lease.id)
                taken_runs = await uow.take_over(orphaned_runs, self.lease.id)
                taken_executions = await uow.take_over(left_executions, self.lease.id)
                taken_clicks = await uow.take_over(left_clicks, self.lease.id)
                taken_edits = await uow.take_over(left_edits, self.lease.id)
                await uow.commit()
        if not command.at_start:
            # At start every stored click and edit is handed again, as one a live replica is deciding right now
            # is only counted once (deciding is a compare-and-set); later, those of dead processes alone.
            clicks = [c for c in clicks if c.id in taken_clicks]
            edits = [e for e in edits if e.id in taken_edits]
        cards = [approval for approval in unposted if run_of[approval.action_id].id in taken_runs]
        # At start an approved action is executed even when a live replica owns its run: the claim makes a
        # duplicate harmless, and the click that approved it may have been handled by a process now gone.
        to_execute = [a for a in unclaimed if command.at_start or run_of[a].id in taken_runs]
        to_replan = [run.id for run in planning if run.id in taken_runs and run.id not in revising]
        taken = (taken_intents, taken_runs, taken_executions, taken_clicks, taken_edits)
        # Every few seconds a sweep usually finds nothing: said at start, or when it took something over.
        said = log.info if command.at_start or any(taken) else log.debug
        said(
            "recovering",
            intents=len(taken_intents),
            runs=len(to_replan),
            cards=len(cards),
            actions=len(to_execute),
            executions=len(taken_executions),
            clicks=len(clicks),
            live_owners_left_alone=len(alive - {self.lease.id}),
        )
        for approval in cards:
            await self._repost_card(approval)
        for escalation, run in unasked:
            if run.id in taken_runs:
                await ask_in_thread(self, escalation)
        # An undo's intent is filed again as the undo it was claimed for, never planned from its text.
        undo_intents = {i.id for i in intents if i.source == UNDO_SOURCE and i.id is not None}
        refiled = [await refile(self.units, self.registry, i) for i in taken_intents & undo_intents]
        # A worker's claim loop plans the intents its lease owns, as many at once as it has room for.
        to_plan = set() if command.claim_loop else taken_intents - undo_intents
        return [
            *(HandleIntent(intent_id) for intent_id in sorted(to_plan)),
            *(proposal for proposal in refiled if proposal is not None),
            *(ReplanRun(run_id) for run_id in to_replan if run_id is not None),
            *(ExecuteAction(action_id) for action_id in to_execute),
            *(ReconcileExecution(execution_id) for execution_id in taken_executions),
            *await self._recovered_clicks_and_edits(clicks, edits),
            *await self._recovered_reasons(unsettled, command.at_start, stale_before),
        ]

    async def _recovered_clicks_and_edits(
        self, clicks: Sequence[Click], edits: Sequence[ActionEdit]
    ) -> list[Message]:
        """Stored clicks and edits handed again in the order they were received, so that an approval and an
        edit of the same request are taken as they came, whatever a crash cut short."""
        timed: list[tuple[datetime, Message]] = [
            *await self._recovered_clicks(clicks),
            *(
                (
                    e.received_at,
                    EditApproval(
                        e.approval_id, e.user, e.params_after, e.channel, edit_id=e.id, recovered=True
                    ),
                )
                for e in edits
            ),
        ]
        return [message for _, message in sorted(timed, key=lambda pair: pair[0])]

    async def _recovered_clicks(self, clicks: Sequence[Click]) -> list[tuple[datetime, Message]]:
        """Each stored click decided again, with when it was received: those of an Approve all or Reject all
        (approvals on their run's review card) as one DecideRun per run, person and button (at its first
        click), so the thread reads as for the live click; a single click as itself."""
        singles: list[tuple[datetime, Message]] = []
        runs: dict[tuple[int, str, bool, str], list[Click]] = {}
        for click in clicks:
            async with self.units() as uow:
                approval = await uow.get(Approval, click.approval_id)
            run_id = await self.reviews.run_of(approval) if approval is not None else None
            if run_id is None or click.id is None:
                decide = DecideApproval(
                    click.approval_id,
                    click.user,
                    click.approve,
                    click.channel,
                    click_id=click.id,
                    recovered=True,
                    edits_seen=click.edits_seen,
                )
                singles.append((click.received_at, decide))
            else:
                runs.setdefault((run_id, click.user, click.approve, click.channel), []).append(click)
        return singles + [
            (
                min(c.received_at for c in run_clicks),
                DecideRun(
                    run_id,
                    user,
                    approve,
                    channel,
                    click_ids=tuple(c.id for c in run_clicks if c.id is not None),
                    recovered=True,
                ),
            )
            for (run_id, user, approve, channel), run_clicks in runs.items()
        ]

    async def _recovered_reasons(
        self, unsettled: Sequence[RejectionReason], at_start: bool, stale_before: datetime
    ) -> list[Message]:
        """Unsettled reasons handed again: those whose revision's planner died; and those nobody plans yet, at
        start (their first handling may have stopped), or later once the process that stored them died, or once
        older than the grace period (they waited too long for their click). One a live process plans is left to
        it; the planning itself is a compare-and-set on the reason's owner, so a reason handed here while its
        first handling runs is planned once."""
        leases = {lease for r in unsettled for lease in (r.owner, r.received_by) if lease is not None}
        alive = await self.lease.alive(leases)

        def left(reason: RejectionReason) -> bool:
            """The process that stored it died before handing it on, or it waited too long (for its click)."""
            died = reason.received_by is not None and reason.received_by not in alive
            return died or reason.received_at < stale_before

        chosen = [
            r
            for r in unsettled
            if (r.owner is None and (at_start or left(r))) or (r.owner is not None and r.owner not in alive)
        ]
        recovered: list[Message] = []
        for reason in chosen:
            assert reason.id is not None
            async with self.units() as uow:
                approval = await uow.get(Approval, reason.approval_id)
            channel = approval.channel if approval is not None else ""
            recovered.append(
                ReviseRejected(reason.approval_id, reason.user, channel, reason.id, recovered=True)
            )
        return recovered

    async def _repost_card(self, approval: Approval) -> None:
        assert approval.id is not None
        async with self.units() as uow:
            proposed = await uow.get(ProposedAction, approval.action_id)
            decision = await uow.get(Decision, approval.decision_id)
        assert proposed is not None and decision is not None
        await self._post_card(
            approval.id,
            self._card(approval, proposed, decision),
            Thread(approval.channel, approval.thread_ts),
        )
