"""Approval clicks: who may decide, a compare-and-set so one click wins, refusals said only to the clicker."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import structlog

from policies.approvers import Refusal, authorise_approval, group_ids
from runtime.approval_requests import request_view
from runtime.crashpoints import crash_point
from runtime.handlers.base import CardRows, Collaborators, HandlerBase
from runtime.handlers.claims import Claims
from runtime.handlers.run_review import RunReviews
from runtime.messagebus import Message
from runtime.messages import (
    ActionApproved,
    ClaimedExecution,
    DecideApproval,
    DecideRun,
    SweepTimers,
)
from runtime.notices import Thread
from runtime.observability import DECISIONS, ESCALATIONS, approval_decided
from runtime.tracing import approval_waited
from storage.action_edits import ActionEdits
from storage.ids import format_id
from storage.records import (
    ActionEdit,
    ActionStatus,
    Approval,
    ApprovalStatus,
    Click,
    Decision,
    ProposedAction,
)
from storage.repositories.approvals import ApprovalInHand
from storage.repositories.executions import ActionToExecute
from storage.unit_of_work import UnitOfWork

log = structlog.get_logger(__name__)

REFUSAL_TEXT = {
    Refusal.ALREADY_DECIDED: "{approval} was already decided, so your click changed nothing.",
    Refusal.EXPIRED: "{approval} has expired; ask for the action again if it is still needed.",
    Refusal.SELF_APPROVAL: "You asked for this, and rule `{rule}` does not let the requester approve it. "
    "Someone else with the {roles} role has to approve.",
    Refusal.NOT_AN_APPROVER: "Only the {roles} role can decide {approval}, and you don't have it.",
    Refusal.ALREADY_VOTED: "You have already approved {approval}; it needs approvals from other people too.",
    Refusal.CARD_OUTDATED: "{approval} was edited after the card you clicked was drawn, so your click did not "
    "count. Look at the card again (it shows the edit) and decide.",
}


# The same refusals as a review card tells them to everyone (``user``: who clicked).
REFUSAL_NOTE = {
    Refusal.SELF_APPROVAL: "<@{user}> asked for it, and rule `{rule}` needs someone else with the {roles} role",
    Refusal.NOT_AN_APPROVER: "only the {roles} role can decide it, and <@{user}> does not have it",
    Refusal.ALREADY_VOTED: "<@{user}> has approved it already; it needs approvals from other people too",
}


# What a click handed again after a crash may find because, while it waited for the restart, a later click (most
# likely its clicker's, clicking again) decided the approval or counted the same vote. Its own handling cannot have
# counted: a click is marked processed in the transaction that decides it.
_ALREADY_COUNTED = (Refusal.ALREADY_DECIDED, Refusal.ALREADY_VOTED)


@dataclass
class _Decided:
    """What the transaction deciding one click came to, with the rows it read, for what is said after it."""

    approval: Approval  # as locked, and as the decision left it
    decision: Decision  # the policy's, that asked for the approval
    action: ProposedAction
    refusal: Refusal | None = None
    refusal_text: str = ""  # said to the clicker
    fields: dict[str, str] = field(default_factory=dict)  # what the refusal's words name
    expired: bool = False  # the click found it past its deadline and expired it
    voters: list[str] = field(default_factory=list)
    edits: list[ActionEdit] | None = None  # applied to the action, once read
    run_card: int | None = None  # the run whose review card shows the approval (None: a card of its own)
    final: bool = False  # the click decided the approval (not a refusal, nor a vote short of the quorum)
    claimed: ClaimedExecution | None = None  # the approved action's execution, claimed by the click

    @property
    def card_rows(self) -> CardRows:
        return self.action, self.decision, self.edits or ()


@dataclass
class _Outcome:
    """What deciding one approval came to: follow-up messages, or why it was refused, or votes so far."""

    messages: list[Message] = field(default_factory=list)
    refusal: Refusal | None = None
    refusal_text: str = ""  # said to the clicker
    refusal_note: str = ""  # said on a review card
    decided: bool = False


class Approvals(HandlerBase):
    def __init__(self, collaborators: Collaborators) -> None:
        super().__init__(collaborators)
        self.reviews = RunReviews(collaborators)
        self.claims = Claims(collaborators)

    async def decide_approval(self, command: DecideApproval) -> Sequence[Message]:
        """Decide the click; its stored click is marked processed in the transaction that decides it."""
        outcome = await self._decide(command)
        return outcome.messages

    async def decide_run(self, command: DecideRun) -> Sequence[Message]:
        """Approve all / Reject all: every approval the click found waiting goes through the single click's
        path (authorisation, compare-and-set, records, audit) one after another; those the clicker may not
        decide stay waiting, and the card and a word to the clicker say which and why."""
        run_ref = format_id("R", command.run_id)
        targets: list[tuple[int, int | None]]
        if command.click_ids is None:
            targets = [(a.id or 0, None) for a in await self.reviews.waiting(command.run_id)]
        else:
            async with self.units() as uow:
                clicks = [await uow.get(Click, click_id) for click_id in command.click_ids]
            targets = [(c.approval_id, c.id) for c in clicks if c is not None and c.processed_at is None]
        if not targets:
            await self._whisper(
                command.channel, command.user, f"Nothing in {run_ref} is waiting for a decision."
            )
            return []
        messages: list[Message] = []
        notes: dict[int, str] = {}
        refused: list[str] = []
        decided = 0
        thread: Thread | None = None
        for approval_id, click_id in targets:
            single = DecideApproval(
                approval_id,
                command.user,
                command.approve,
                command.channel,
                click_id=click_id,
                recovered=command.recovered,
            )
            outcome = await self._decide(single, on_review=True)
            messages += outcome.messages
            decided += outcome.decided
            if outcome.refusal_note:
                notes[approval_id] = outcome.refusal_note
            if outcome.refusal_text:
                refused.append(outcome.refusal_text)
        async with self.units() as uow:
            first = await uow.get(Approval, targets[0][0])
        if first is not None:
            thread = Thread(first.channel, first.thread_ts)
        await self.reviews.refresh(command.run_id, notes)
        verb = "approved" if command.approve else "rejected"
        log.info("run_decided", run=command.run_id, outcome=verb, decided=decided, refused=len(refused))
        if refused:
            await self._whisper(
                command.channel,
                command.user,
                f"You {verb} {decided} of the {len(targets)} requests waiting in {run_ref}. "
                + " ".join(refused),
                thread_ts=thread.ts if thread else None,
            )
        if decided and not command.approve and thread is not None:
            await self._say(
                thread,
                f":no_entry_sign: <@{command.user}> rejected {decided} requests of {run_ref}; "
                "nothing of them was done.",
                context=f"`{run_ref}`",
            )
        return messages

    async def _decide(self, command: DecideApproval, *, on_review: bool = False) -> _Outcome:
        """One approval decided (or refused) for one click. ``on_review``: part of a click on a run's review
        card, which says the outcome once for all its approvals rather than one message each."""
        now = self.clock()
        groups: dict[str, set[str]] = {}
        while True:
            decided = await self._decided(command, groups, now, on_review=on_review)
            if not isinstance(decided, set):
                break
            # User groups are looked up outside the transaction (Slack may be slow); then the click is decided
            # from the start, under the approval's lock again.
            groups |= {g: await self.transport.group_members(g) for g in sorted(decided)}
        if isinstance(decided, _Outcome):
            return decided
        if decided is None:
            approval_ref = format_id("AP", command.approval_id)
            await self._whisper(command.channel, command.user, f"There is no approval {approval_ref}.")
            return _Outcome()
        approval = decided.approval
        assert approval.id is not None
        approval_ref = format_id("AP", approval.id)
        if decided.expired:
            await self._show_settled(decided, "expired", None, now)
        if decided.refusal is not None:
            return await self._refused(decided, command, on_review=on_review)
        outcome = ApprovalStatus.APPROVED if command.approve else ApprovalStatus.REJECTED
        voters = decided.voters
        if command.approve and len(voters) < approval.quorum:
            counted = f"{approval_ref} has {len(voters)} of the {approval.quorum} approvals it needs."
            if on_review:
                return _Outcome(refusal_note=f"counted; {counted}")
            if decided.run_card is None:
                await self._show_votes(approval, voters, rows=decided.card_rows)
            await self._whisper(
                approval.channel, command.user, f"Counted: {counted}", thread_ts=approval.thread_ts
            )
            return _Outcome()
        crash_point("approval_committed")
        DECISIONS.labels(verdict=outcome.value).inc()
        approval_decided(outcome.value, approval.created_at, now)
        approval_waited(approval.id, approval.created_at, now, outcome.value)
        log.info("approval_decided", approval=approval.id, outcome=outcome.value, user=command.user)
        if not on_review:
            await self._show_settled(decided, outcome.value, command.user, now)
        if command.approve:
            return _Outcome(messages=[ActionApproved(approval.action_id, decided.claimed)], decided=True)
        if not on_review:
            await self._say(
                Thread(approval.channel, approval.thread_ts),
                f":no_entry_sign: <@{command.user}> rejected {approval_ref}; nothing was done.",
                context=f"`{format_id('A', approval.action_id)}`",
            )
        return _Outcome(decided=True)

    async def _decided(
        self, command: DecideApproval, groups: Mapping[str, set[str]], now: datetime, *, on_review: bool
    ) -> _Decided | set[str] | _Outcome | None:
        """Decide the click in one transaction: lock the approval, mark the stored click processed, authorise
        the clicker, count the vote, decide, mint the capability (and claim the execution it lets run), record
        the decision (or the refusal), and read what its card shows. None: there is no such approval; a set:
        the user groups to look up before it can be decided; an outcome (of nothing): the stored click was
        handled already."""
        roles = self.policy.roles
        async with self.units() as uow:
            # The approval row is locked for the whole decision, so concurrent clicks (from any replica)
            # are counted one after another: one of them completes the quorum, the rest see it decided.
            hand = await uow.approvals.lock_approval_in_hand(command.approval_id)
            # Marked in the transaction that decides it, the click is decided and marked at once: a crash before
            # the commit leaves it to be decided again, and of two processes handed it, the second finds it marked.
            if command.click_id is not None and not await uow.approvals.mark_click_processed(
                command.click_id, now
            ):
                log.info("click_already_handled", click=command.click_id, recovered=command.recovered)
                return _Outcome()
            if hand is None:
                await uow.commit()  # the stored click is handled: there is nothing for it to decide
                return None
            approval = hand.approval
            assert approval.id is not None
            view = request_view(approval)
            missing = group_ids(roles, view.deciding_roles(now)) - groups.keys()
            if missing:
                return missing
            decided = _Decided(hand.approval, hand.decision, hand.action)
            refusal = authorise_approval(
                view, command.user, approve=command.approve, roles=roles, group_members=groups, now=now
            )
            edits = ActionEdits(uow.session)
            if not hand.edited:
                decided.edits = []
            if refusal is None and command.edits_seen is not None:
                if decided.edits is None:
                    decided.edits = await edits.applied_to(approval.action_id)
                if command.edits_seen != len(decided.edits):
                    refusal = Refusal.CARD_OUTDATED
            if (
                refusal is None
                and command.approve
                and not await uow.approvals.add_vote(approval.id, command.user)
            ):
                refusal = Refusal.ALREADY_VOTED
            if refusal is Refusal.EXPIRED:
                decided.expired = await self._expire_in(uow, approval, now)
            if refusal is not None:
                self._refuse_in(uow, decided, command, refusal, now)
            else:
                await self._decide_in(uow, hand, decided, command, now)
            shown = decided.expired or (decided.refusal is None and not on_review)
            if shown and hand.on_card_with_others:
                decided.run_card = hand.action.run_id
            elif shown and decided.edits is None:
                decided.edits = await edits.applied_to(approval.action_id)
            if decided.final:
                crash_point("approval_decided")
            await uow.commit()
        return decided

    async def _decide_in(
        self,
        uow: UnitOfWork,
        hand: ApprovalInHand,
        decided: _Decided,
        command: DecideApproval,
        now: datetime,
    ) -> None:
        """Count the click (its vote already stored) and, when it completes the approval, decide it: the
        compare-and-set, the action's status, and for an approval the capability that lets it run once."""
        approval, policy_decision = decided.approval, decided.decision
        assert approval.id is not None
        outcome = ApprovalStatus.APPROVED if command.approve else ApprovalStatus.REJECTED
        if not command.approve:
            decided.voters = []
        elif approval.quorum > 1:
            decided.voters = await uow.approvals.voters(approval.id)
        else:
            decided.voters = [command.user]  # a quorum of one: the vote just stored is the only one
        final = decided.final = not command.approve or len(decided.voters) >= approval.quorum
        if final:
            await uow.approvals.decide_approval(approval.id, outcome, command.user, now)
            proposed = await uow.runs.set_action_status(
                approval.action_id,
                ActionStatus.APPROVED if command.approve else ActionStatus.REJECTED,
            )
            if command.approve:
                await self._grant(uow, hand, decided, command, proposed)
        count = (
            f" ({len(decided.voters)} of {approval.quorum})"
            if approval.quorum > 1 and command.approve
            else ""
        )
        await uow.add(
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

    async def _grant(
        self,
        uow: UnitOfWork,
        hand: ApprovalInHand,
        decided: _Decided,
        command: DecideApproval,
        proposed: ProposedAction,
    ) -> None:
        """Mint the capability that lets the approved action run once, and spend it at once on the action's
        execution, claimed in the click's transaction, when nothing holds the action back. Held back, or a
        recovered click, it waits unspent for ExecuteAction, which says why or claims it (recovery's own path)."""
        capability = self._capability(proposed, decided.decision.policy_hash or "", command.user)
        if not command.recovered:
            found = ActionToExecute(proposed, hand.run, hand.pause, hand.intent, tuple(decided.voters), None)
            claim = await self.claims.claim_in(uow, found, capability)
            if isinstance(claim, ClaimedExecution):
                decided.claimed = claim
                return
        await uow.approvals.mint_capability(capability)

    async def sweep(self, command: SweepTimers) -> Sequence[Message]:
        """The approval timers, kept in SQL: escalate what waited too long, expire what passed its deadline.

        Run at start and then every few seconds; each step is a compare-and-set, so it fires once however many
        replicas sweep."""
        now = self.clock()
        async with self.units() as uow:
            to_escalate, to_expire = await uow.approvals.approvals_due(now)
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
            if not await uow.approvals.mark_escalated(approval.id, now):
                return
            ESCALATIONS.labels(reason="approval_timeout").inc()
            await uow.add(
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

    def _refuse_in(
        self, uow: UnitOfWork, decided: _Decided, command: DecideApproval, refusal: Refusal, now: datetime
    ) -> None:
        """Note why the click does not count, and record the refusal unless it is a recovered click that a later
        one most likely stood in for (see _ALREADY_COUNTED)."""
        approval = decided.approval
        deciding = request_view(approval).deciding_roles(now)
        rule_id = decided.decision.rule_id or "default"
        decided.refusal = refusal
        decided.fields = {
            "approval": format_id("AP", approval.id),
            "rule": rule_id,
            "roles": " or ".join(deciding),
        }
        decided.refusal_text = REFUSAL_TEXT[refusal].format(**decided.fields)
        if command.recovered and refusal in _ALREADY_COUNTED:
            return
        uow.session.add(
            Decision(
                action_id=approval.action_id,
                kind="refusal",
                verdict=f"refused:{refusal.value}",
                rule_id=rule_id,
                reason=decided.refusal_text,
                actor=command.user,
            )
        )

    async def _refused(self, decided: _Decided, command: DecideApproval, *, on_review: bool) -> _Outcome:
        """Tell of a refused click: the clicker, or the run's review card and the clicker at once."""
        approval, refusal, text = decided.approval, decided.refusal, decided.refusal_text
        assert refusal is not None
        if command.recovered and refusal in _ALREADY_COUNTED:
            # Most likely its clicker clicked again while it waited: nothing to tell anyone.
            log.info("recovered_click_already_counted", approval=approval.id, click=command.click_id)
            return _Outcome(refusal=refusal)
        DECISIONS.labels(verdict="refused").inc()
        if not on_review:
            await self._whisper(approval.channel, command.user, text, thread_ts=approval.thread_ts)
            return _Outcome(refusal=refusal)
        if refusal is Refusal.ALREADY_DECIDED:
            return _Outcome(refusal=refusal)  # the card shows how it was decided
        note = REFUSAL_NOTE.get(refusal, "")
        return _Outcome(
            refusal=refusal,
            refusal_text=f"{format_id('AP', approval.id)}: {text}",
            refusal_note=note.format(user=command.user, **decided.fields),
        )

    async def _expire(self, approval: Approval, now: datetime) -> bool:
        """Expire a pending approval (never approve it); False when it had been decided meanwhile."""
        async with self.units() as uow:
            if not await self._expire_in(uow, approval, now):
                return False
            await uow.commit()
        await self._settle_card(approval, "expired", None, now)
        return True

    async def _expire_in(self, uow: UnitOfWork, approval: Approval, now: datetime) -> bool:
        if not await uow.approvals.decide_approval(approval.id or 0, ApprovalStatus.EXPIRED, "clock", now):
            return False
        await uow.runs.set_action_status(approval.action_id, ActionStatus.EXPIRED)
        await uow.add(
            Decision(
                action_id=approval.action_id,
                kind="expiry",
                verdict="expired",
                actor="clock",
                reason="nobody decided before the rule's timeout",
            )
        )
        return True

    async def _settle_card(self, approval: Approval, outcome: str, actor: str | None, at: datetime) -> None:
        """Show a decided or expired approval on its card: its run's review card, or its own."""
        run_id = await self.reviews.run_of(approval)
        if run_id is None:
            await self._close_card(approval, outcome, actor, at)
        else:
            await self.reviews.refresh(run_id, {})

    async def _show_settled(self, decided: _Decided, outcome: str, actor: str | None, at: datetime) -> None:
        """Show a decided or expired approval on its card, drawn from the rows its decision read."""
        if decided.run_card is not None:
            await self.reviews.refresh(decided.run_card, {})
        else:
            await self._close_card(decided.approval, outcome, actor, at, rows=decided.card_rows)
