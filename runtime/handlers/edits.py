"""Edit, then approve: a person who may decide a waiting approval changes its action's parameters, the edit is
recorded, and the edited action is judged again by the policy exactly as planning judged it.

Everything happens in one transaction with the approval row locked, so concurrent edits and clicks (from any
replica) are taken one after another, and the edit is marked processed in that same transaction: handling a
stored edit twice (a recovery pass after a crash) finds it processed and does nothing.

What the new verdict does: allow approves the request and the edited action runs; deny closes it; an approval
asked for again replaces the request in place (its roles, quorum and deadlines, and no earlier vote, which
approved other parameters), and the editor's edit counts as their approval only if the policy lets them
approve the edited request.
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import structlog

from connectors.errors import InvalidActionError
from policies.approvers import ApprovalRequestView, Refusal, authorise_approval, is_in_roles
from policies.engine import PolicyVerdict
from runtime.approval_requests import request_view
from runtime.card_values import edit_changes, field_labels
from runtime.handlers.base import Collaborators, HandlerBase, card_edit
from runtime.handlers.judging import (
    COUNTED_TODAY,
    MOVED_MONEY,
    Judged,
    approval_deadlines,
    judge,
    policy_decision,
)
from runtime.handlers.run_review import RunReviews
from runtime.messagebus import Message
from runtime.messages import ActionApproved, EditApproval
from runtime.mrkdwn import escape
from runtime.notices import ApprovalCard, Thread
from runtime.observability import DECISIONS, approval_decided
from storage.action_edits import EDIT_REFUSED, ActionEdits
from storage.ids import format_id
from storage.records import (
    ActionEdit,
    ActionStatus,
    Approval,
    ApprovalStatus,
    Decision,
    PolicyVersion,
    ProposedAction,
    utcnow,
)
from storage.unit_of_work import UnitOfWork

log = structlog.get_logger(__name__)

REFUSAL_TEXT = {
    Refusal.ALREADY_DECIDED: "{approval} was already decided, so your edit changed nothing.",
    Refusal.EXPIRED: "{approval} has expired, so your edit changed nothing; ask for the action again if it is "
    "still needed.",
    Refusal.NOT_AN_APPROVER: "Only the {roles} role can edit {approval}, and you don't have it; your edit "
    "changed nothing.",
}

# Why an editor's edit did not count as their approval of the edited request (the edit itself is saved).
NOT_COUNTED_TEXT = {
    Refusal.SELF_APPROVAL: "Your edit of {approval} is saved, but you asked for it and rule `{rule}` does not let "
    "the requester approve it: someone else with the {roles} role has to approve.",
    Refusal.NOT_AN_APPROVER: "Your edit of {approval} is saved, but the edited request needs the {roles} role, "
    "which you don't have, so it did not count as your approval: it waits for them.",
}
VALUE_MAX = 80  # a value as an edit decision's reason quotes it


@dataclass
class _Edited:
    """What handling one edit came to, for telling people once the transaction is committed."""

    approval: Approval | None = None
    private: str = ""  # said to the editor only
    verdict: PolicyVerdict | None = None
    proposed: ProposedAction | None = None
    decision: Decision | None = None  # the policy's new one
    edit: ActionEdit | None = None
    voters: list[str] = field(default_factory=list)

    @property
    def applied(self) -> bool:
        return self.verdict is not None


class Edits(HandlerBase):
    def __init__(self, collaborators: Collaborators) -> None:
        super().__init__(collaborators)
        self.reviews = RunReviews(collaborators)

    async def edit(self, command: EditApproval) -> Sequence[Message]:
        group_members = await self._group_members()  # before the transaction: it may ask Slack
        now = self.clock()
        async with self.units() as uow:
            edited = await self._apply(uow, command, group_members, now)
            await uow.commit()
        if edited.private:
            thread_ts = edited.approval.thread_ts if edited.approval else None
            await self._whisper(command.channel, command.user, edited.private, thread_ts=thread_ts)
        if not edited.applied:
            return []
        return await self._tell(command, edited, now)

    async def _apply(
        self,
        uow: UnitOfWork,
        command: EditApproval,
        group_members: Mapping[str, Collection[str]],
        now: datetime,
    ) -> _Edited:
        edits = ActionEdits(uow.session)
        approval_ref = format_id("AP", command.approval_id)
        # Locked first, so that edits and clicks of this approval take turns from here to the commit.
        approval = await uow.approvals.lock_approval(command.approval_id)
        if command.edit_id is not None:
            stored = await edits.fresh(command.edit_id)
            if stored is None or stored.processed_at is not None:
                log.info("edit_already_handled", edit=command.edit_id, recovered=command.recovered)
                return _Edited()
            edit = stored
        else:
            edit = await uow.add(
                ActionEdit(
                    approval_id=command.approval_id,
                    action_id=approval.action_id if approval else None,
                    user=command.user,
                    channel=command.channel,
                    params_after=command.params,
                )
            )
        if approval is None or approval.id is None:
            text = f"There is no approval {approval_ref}."
            await edits.processed(edit, now, f"refused: {text}")
            return _Edited(private=text)
        edit.action_id = approval.action_id
        request = await uow.get(Decision, approval.decision_id)
        assert request is not None
        view = request_view(approval)
        deciding = view.deciding_roles(now)
        refusal = edit_refusal(view, command.user, self.policy.roles, group_members, now)
        if refusal is not None:
            fields = {"approval": approval_ref, "roles": " or ".join(deciding)}
            text = REFUSAL_TEXT.get(refusal, "{approval} cannot be edited.").format(**fields)
            await uow.add(
                Decision(
                    action_id=approval.action_id,
                    kind="refusal",
                    verdict=f"refused:{refusal.value}",
                    rule_id=request.rule_id,
                    reason=text,
                    justification=EDIT_REFUSED,
                    actor=command.user,
                )
            )
            await edits.processed(edit, now, f"refused: {text}")
            DECISIONS.labels(verdict="refused").inc()
            return _Edited(approval=approval, private=text)

        proposed = await uow.get(ProposedAction, approval.action_id)
        assert proposed is not None and proposed.id is not None
        try:
            before = self.registry.validate(proposed.name, proposed.params).model_dump(mode="json")
        except InvalidActionError as exc:
            # Stored before the model changed: no edit can start from it (nor be retried at every start).
            log.warning("edit_of_invalid_params", approval=approval.id, error=str(exc))
            await edits.processed(edit, now, "refused: stored parameters no longer valid")
            return _Edited(
                approval=approval,
                private=f"{approval_ref} cannot be edited: its stored parameters no longer fit "
                f"{proposed.name} ({exc}). Approve or reject it as it is, or ask for it again.",
            )
        # The edit's parameters over the current ones, taken under the lock: an edit made since the editor's
        # dialog opened keeps whatever this one did not change.
        try:
            action = self.registry.validate(proposed.name, {**proposed.params, **command.params})
        except InvalidActionError as exc:
            await edits.processed(edit, now, f"invalid: {exc}")
            return _Edited(
                approval=approval,
                private=f"Your edit of {approval_ref} was not saved: {exc}. Nothing changed.",
            )
        after = action.model_dump(mode="json")
        changed = sorted(name for name in before.keys() | after.keys() if before.get(name) != after.get(name))
        if fixed := sorted(set(changed) & type(action).fixed_fields()):
            text = (
                f"Your edit of {approval_ref} was not saved: {', '.join(fixed)} "
                f"{'says' if len(fixed) == 1 else 'say'} what the request is about and cannot be edited; "
                "ask for a new request instead. Nothing changed."
            )
            await edits.processed(edit, now, f"refused: {', '.join(fixed)} cannot be edited")
            return _Edited(approval=approval, private=text)
        if not changed:
            await edits.processed(edit, now, "unchanged")
            return _Edited(
                approval=approval, private=f"Nothing changed: {approval_ref} already has these parameters."
            )

        edit.params_before, edit.params_after, edit.changed = dict(proposed.params), after, changed
        proposed.params = after
        uow.session.add(proposed)
        await uow.add(
            Decision(
                action_id=proposed.id,
                kind="edit",
                verdict="edited",
                reason=change_summary(before, after, changed),
                justification=f"edited by <@{command.user}>",
                actor=command.user,
            )
        )
        if self.policy.text:
            await uow.insert_if_absent(
                PolicyVersion, {"hash": self.policy.hash, "text": self.policy.text, "first_seen_at": utcnow()}
            )
        judged = await self._judged_with(uow, proposed)
        verdict, facts = await judge(
            self.policy, self.clock, uow, action, approval.requester, proposed.run_id, judged, group_members
        )
        decision = await uow.add(
            policy_decision(proposed.id, verdict, facts, f"judged again after <@{command.user}>'s edit")
        )
        assert decision.id is not None
        DECISIONS.labels(verdict=verdict.verdict).inc()
        approval.decision_id = decision.id
        edited = _Edited(approval=approval, verdict=verdict, proposed=proposed, decision=decision, edit=edit)
        outcome: str = verdict.verdict
        if verdict.verdict == "allow":
            self._decide(approval, proposed, ApprovalStatus.APPROVED, command.user, now)
            await uow.approvals.mint_capability(self._capability(proposed, verdict.policy_hash, "policy"))
        elif verdict.verdict == "deny":
            self._decide(approval, proposed, ApprovalStatus.REJECTED, command.user, now)
            proposed.status = ActionStatus.DENIED
        else:
            outcome = await self._ask_again(uow, edited, command.user, group_members, now)
        uow.session.add(approval)
        uow.session.add(proposed)
        await uow.runs.refresh_run_status(proposed.run_id)
        await edits.processed(edit, now, outcome)
        return edited

    async def _judged_with(self, uow: UnitOfWork, proposed: ProposedAction) -> list[Judged]:
        """Every other action of the run that was not turned down, earlier or later, as the edited one is
        judged with them: one that moved or will move money (approved, executed) as allowed, any other with
        the policy's latest verdict on it. (Planning saw only the earlier ones; an edit comes after all.)"""
        judged: list[Judged] = []
        for other in await uow.runs.actions_for_run(proposed.run_id):
            if other.id is None or other.id == proposed.id or other.status not in COUNTED_TODAY:
                continue
            verdicts = [
                d.verdict for d in await uow.runs.decisions_for_action(other.id) if d.kind == "policy"
            ]
            try:
                action = self.registry.validate(other.name, other.params)
            except InvalidActionError:
                continue  # an action no connector offers any more: it moved nothing
            moved = other.status in MOVED_MONEY
            judged.append((action, "allow" if moved else verdicts[-1] if verdicts else ""))
        return judged

    async def _ask_again(
        self,
        uow: UnitOfWork,
        edited: _Edited,
        editor: str,
        group_members: Mapping[str, Collection[str]],
        now: datetime,
    ) -> str:
        """The same approval asks again, as the new verdict says; the editor's approval counts if the policy
        lets them approve the edited request. The edit's outcome."""
        approval, proposed, verdict, decision = (
            edited.approval,
            edited.proposed,
            edited.verdict,
            edited.decision,
        )
        assert approval is not None and approval.id is not None and proposed is not None
        assert verdict is not None and decision is not None
        roles_changed = (list(verdict.approver_roles), list(verdict.escalate_to)) != (
            list(approval.approver_roles),
            list(approval.escalate_to),
        )
        approval.approver_roles = list(verdict.approver_roles)
        approval.forbid_self_approval = verdict.forbid_self_approval
        approval.quorum = verdict.quorum
        approval.escalate_to = list(verdict.escalate_to)
        escalate_at, expires_at = approval_deadlines(now, verdict, proposed)
        # An edit does not buy the request more time: the earlier expiry stays. Its escalation starts again
        # only when it now waits for other people.
        if approval.expires_at is not None:
            expires_at = approval.expires_at if expires_at is None else min(approval.expires_at, expires_at)
        approval.expires_at = expires_at
        if roles_changed:
            approval.escalate_at, approval.escalated_at = escalate_at, None
        uow.session.add(approval)
        await uow.session.flush()
        await ActionEdits(uow.session).void_votes(approval.id)
        view = request_view(approval)
        refusal = authorise_approval(
            view, editor, approve=True, roles=self.policy.roles, group_members=group_members, now=now
        )
        if refusal is not None:
            fields = {
                "approval": format_id("AP", approval.id),
                "rule": verdict.rule_id or "default",
                "roles": " or ".join(view.deciding_roles(now)),
            }
            edited.private = NOT_COUNTED_TEXT.get(
                refusal, "Your edit of {approval} is saved; it waits for the {roles} role."
            ).format(**fields)
            return f"{verdict.verdict}; not counted as {editor}'s approval ({refusal.value})"
        await uow.approvals.add_vote(approval.id, editor)
        edited.voters = await uow.approvals.voters(approval.id)
        final = len(edited.voters) >= approval.quorum
        if final:
            self._decide(approval, proposed, ApprovalStatus.APPROVED, editor, now)
            await uow.approvals.mint_capability(
                self._capability(proposed, decision.policy_hash or "", editor)
            )
        count = f" ({len(edited.voters)} of {approval.quorum})" if approval.quorum > 1 else ""
        await uow.add(
            Decision(
                action_id=approval.action_id,
                kind="human",
                verdict="approved" if final else "vote",
                rule_id=decision.rule_id,
                policy_hash=decision.policy_hash,
                justification=f"approved{count} in Slack by <@{editor}> with their edit",
                actor=editor,
            )
        )
        return f"{verdict.verdict}; counted as {editor}'s approval"

    @staticmethod
    def _decide(
        approval: Approval, proposed: ProposedAction, status: ApprovalStatus, actor: str, now: datetime
    ) -> None:
        """Decide the locked, pending approval (its action follows)."""
        approval.status, approval.decided_by, approval.decided_at = status, actor, now
        proposed.status = (
            ActionStatus.APPROVED if status == ApprovalStatus.APPROVED else ActionStatus.REJECTED
        )

    async def _tell(self, command: EditApproval, edited: _Edited, now: datetime) -> Sequence[Message]:
        """The thread hears what the edit changed and what the policy now says; the card shows it."""
        approval, proposed, verdict, decision, edit = (
            edited.approval,
            edited.proposed,
            edited.verdict,
            edited.decision,
            edited.edit,
        )
        assert approval is not None and proposed is not None and proposed.id is not None
        assert verdict is not None and decision is not None and edit is not None
        action = self.registry.validate(proposed.name, proposed.params)
        summary = escape(self._told_summary(action))
        approval_ref = format_id("AP", approval.id)
        changes = edit_changes(card_edit(edit), field_labels(type(action)), self.zone)
        said = f":pencil2: <@{command.user}> edited {approval_ref}: {changes}."
        ids = f"`{format_id('A', proposed.id)}` · `{format_id('D', decision.id)}` · rule `{verdict.rule_id}`"
        if approval.status == ApprovalStatus.APPROVED:
            approval_decided(ApprovalStatus.APPROVED.value, approval.created_at, now)
            if verdict.verdict == "allow":
                said += f" Allowed by policy after the edit: {summary}. Running it now."
            else:
                said += f" Approved by <@{command.user}> with the edit: {summary}. Running it now."
        elif verdict.verdict == "deny":
            said += f"\n:no_entry: Not allowed after the edit: {summary}. {escape(verdict.explanation)}."
        else:
            needs = f" ({approval.quorum} different people)" if approval.quorum > 1 else ""
            so_far = f"; {len(edited.voters)} of {approval.quorum} approvals so far" if edited.voters else ""
            said += (
                f" It waits for {', '.join(approval.approver_roles)}{needs}{so_far}: "
                f"{self._mention_roles(approval.approver_roles)}"
            )
        await self._say(Thread(approval.channel, approval.thread_ts), said, context=ids)
        await self._show(approval, edited.voters, command.user, now)
        log.info("approval_edited", approval=approval.id, verdict=verdict.verdict, status=approval.status)
        return [ActionApproved(proposed.id)] if approval.status == ApprovalStatus.APPROVED else []

    async def _show(self, approval: Approval, voters: list[str], editor: str, now: datetime) -> None:
        """The card drawn again from the records: the run's review card, or the approval's own."""
        run_id = await self.reviews.run_of(approval)
        if run_id is not None:
            await self.reviews.refresh(run_id, {})
        elif approval.status == ApprovalStatus.PENDING:
            card = await self._stored_card(approval)
            await self._redraw_card(approval, _with_voters(card, voters))
        else:
            await self._close_card(approval, approval.status, editor, now)


def edit_refusal(
    view: ApprovalRequestView,
    user: str,
    roles: Mapping[str, Collection[str]],
    group_members: Mapping[str, Collection[str]],
    now: datetime,
) -> Refusal | None:
    """Why ``user`` may not edit the request, or None. Deciding, not approving: a requester who may not approve
    their own request may still edit it when they hold a deciding role (their edit then does not count as an
    approval); withdrawing is not editing."""
    refusal = authorise_approval(view, user, approve=False, roles=roles, group_members=group_members, now=now)
    if refusal is None and not is_in_roles(user, view.deciding_roles(now), roles, group_members):
        refusal = Refusal.NOT_AN_APPROVER
    return refusal


def _with_voters(card: ApprovalCard, voters: list[str]) -> ApprovalCard:
    return replace(card, voters=tuple(voters)) if voters else card


def change_summary(before: Mapping[str, Any], after: Mapping[str, Any], changed: Sequence[str]) -> str:
    """What an edit changed, in plain words for the records: ``amount 250.0 → 40.0; reason "a" → "b"``."""
    return "; ".join(f"{name} {_value(before.get(name))} → {_value(after.get(name))}" for name in changed)


def _value(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=False, sort_keys=True)
    return text if len(text) <= VALUE_MAX else text[: VALUE_MAX - 1] + "…"
