"""Approvals and what decides them: votes, clicks, the capabilities an approval mints, escalations that fall due."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Select, bindparam, func, update
from sqlalchemy import select as sql_select
from sqlalchemy.orm import aliased
from sqlmodel import col, select

from storage.audit import BOOKKEEPING
from storage.records import (
    ActionEdit,
    AgentPause,
    Approval,
    ApprovalStatus,
    ApprovalVote,
    Capability,
    Click,
    Decision,
    Intent,
    ProposedAction,
    Run,
    utcnow,
)
from storage.repositories.base import SessionRepository, audited_write, dialect_of, insert_if_absent


@dataclass(frozen=True)
class ApprovalInHand:
    """An approval locked for deciding it, with what deciding it and drawing its card need."""

    approval: Approval
    decision: Decision  # the policy's, that asked for the approval
    action: ProposedAction
    on_card_with_others: bool  # its message is its run's review card, shared with other approvals
    edited: bool  # someone has edited its action's parameters (ActionEdits.applied_to tells how)
    # What claiming the action's execution needs, should the click approve it for good.
    run: Run
    intent: Intent
    pause: AgentPause | None  # its agent's, if paused


class ApprovalRepository(SessionRepository):
    __slots__ = ()

    async def pending_approvals(self, channel: str | None = None) -> Sequence[Approval]:
        query = select(Approval).where(Approval.status == ApprovalStatus.PENDING)
        if channel is not None:
            query = query.where(Approval.channel == channel)
        return (await self.session.exec(query.order_by(col(Approval.id)))).all()

    async def pending_approvals_with_action_names(self) -> list[tuple[Approval, str]]:
        """Every waiting approval, oldest first, with the name of the action it waits on (one query, not one
        per approval)."""
        query = (
            select(Approval, ProposedAction.name)
            .join(ProposedAction, col(ProposedAction.id) == col(Approval.action_id))
            .where(Approval.status == ApprovalStatus.PENDING)
            .order_by(col(Approval.id))
        )
        return list((await self.session.exec(query)).all())

    async def approval_for_action(self, action_id: int) -> Approval | None:
        return (await self.session.exec(select(Approval).where(Approval.action_id == action_id))).first()

    async def pending_approvals_in_thread(self, channel: str, thread_ts: str) -> Sequence[Approval]:
        query = select(Approval).where(
            Approval.status == ApprovalStatus.PENDING,
            Approval.channel == channel,
            Approval.thread_ts == thread_ts,
        )
        return (await self.session.exec(query.order_by(col(Approval.id)))).all()

    async def approvals_without_message(self, stale_before: datetime) -> list[Approval]:
        query = select(Approval).where(
            col(Approval.status) == ApprovalStatus.PENDING,
            col(Approval.message_ts).is_(None),
            col(Approval.created_at) < stale_before,
        )
        return list((await self.session.exec(query)).all())

    async def mint_capability(self, capability: Capability, *, spent_at: datetime | None = None) -> bool:
        """Mint the capability unless the action has one (False then); ``spent_at``: minted spent, by the claim
        in the same transaction that it lets run."""
        values = capability.model_dump(exclude={"id"})
        if spent_at is not None:
            values["spent_at"] = spent_at
        return await insert_if_absent(self.session, Capability, values)

    async def spend_capability(
        self, action_id: int, action_name: str, params_hash: str, now: datetime
    ) -> bool:
        """Spend the action's capability: only once, only unexpired, only for exactly these parameters."""
        spending = {
            "spend_action_id": action_id,
            "spend_name": action_name,
            "spend_hash": params_hash,
            "now": now,
        }
        return bool((await audited_write(self.session, _SPEND, spending)).rowcount)

    async def lock_approval_in_hand(self, approval_id: int) -> ApprovalInHand | None:
        """The approval, fresh and locked as :meth:`lock_approval` has it, with its policy decision, its
        action, whether its message is shared with other approvals of the run, whether its action was edited,
        and its run, intent and agent's pause: one statement on SQLite, two on PostgreSQL.

        On PostgreSQL the lock comes first, alone: a statement that waits for a row lock re-reads only the rows
        it locks once the holder commits, and takes the rest from the snapshot it began with. Joined to the
        lock, a click that waited for an edit would see the edit's approval row next to the action and
        decision from before it. Read after the lock, in a statement of its own (a new snapshot under READ
        COMMITTED), everything is as the edit left it. SQLite's writers take turns from BEGIN to COMMIT: its
        one statement reads what the last writer committed."""
        if dialect_of(self.session) == "postgresql" and await self.lock_approval(approval_id) is None:
            return None
        # sqlmodel types exec() for at most four columns; the rows are the eight selected.
        found = (await self.session.exec(_IN_HAND, params={"approval_id": approval_id})).first()  # type: ignore[call-overload]
        if found is None:
            return None
        approval, decision, action, on_card, was_edited, run, intent, pause = found
        return ApprovalInHand(approval, decision, action, on_card > 1, bool(was_edited), run, intent, pause)

    async def lock_approval(self, approval_id: int) -> Approval | None:
        """The approval, fresh and locked for this transaction (FOR UPDATE; SQLite has one writer anyway)."""
        query = (
            select(Approval)
            .where(col(Approval.id) == approval_id)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        return (await self.session.exec(query)).first()

    async def add_vote(self, approval_id: int, user: str) -> bool:
        """False when this user has already approved: a person counts once towards a quorum."""
        return await insert_if_absent(
            self.session, ApprovalVote, {"approval_id": approval_id, "user": user, "created_at": utcnow()}
        )

    async def voters(self, approval_id: int) -> list[str]:
        query = (
            select(ApprovalVote.user)
            .where(ApprovalVote.approval_id == approval_id)
            .order_by(col(ApprovalVote.id))
        )
        return list((await self.session.exec(query)).all())

    async def approvals_due(self, now: datetime) -> tuple[list[Approval], list[Approval]]:
        """Pending approvals whose escalation is due, and those whose final deadline has passed."""
        pending = col(Approval.status) == ApprovalStatus.PENDING
        escalate = select(Approval).where(
            pending, col(Approval.escalate_at) <= now, col(Approval.escalated_at).is_(None)
        )
        expire = select(Approval).where(pending, col(Approval.expires_at) <= now)
        return list((await self.session.exec(escalate)).all()), list((await self.session.exec(expire)).all())

    async def mark_escalated(self, approval_id: int, now: datetime) -> bool:
        statement = (
            update(Approval)
            .where(col(Approval.id) == approval_id, col(Approval.escalated_at).is_(None))
            .values(escalated_at=now)
        )
        return bool((await self.session.exec(statement)).rowcount)

    async def show_approval_at(self, approval_id: int, message_ts: str) -> None:
        """Remember the Slack message that shows the approval, in one UPDATE. Which message shows it is
        bookkeeping, left out of the approval's audited content, so the write goes past the session (whose audit
        hook would read the row back only to find its content unchanged)."""
        assert "message_ts" in BOOKKEEPING["approval"]
        connection = await self.session.connection()
        await connection.execute(_SHOW_AT, {"approval_id": approval_id, "set_message_ts": message_ts})

    async def decide_approval(
        self, approval_id: int, status: ApprovalStatus, actor: str, at: datetime
    ) -> bool:
        """Compare-and-set pending → decided; exactly one of any number of concurrent callers gets True."""
        decided = {
            "approval_id": approval_id,
            "set_status": status,
            "set_decided_by": actor,
            "set_decided_at": at,
        }
        # An approval the session holds is brought up to date with the row as decided (see audited_write).
        return bool((await audited_write(self.session, _DECIDE, decided)).rowcount)

    async def unprocessed_clicks(self) -> list[Click]:
        """Clicks stored and acknowledged but never handled (their process stopped), oldest first."""
        query = select(Click).where(col(Click.processed_at).is_(None)).order_by(col(Click.id))
        return list((await self.session.exec(query)).all())

    async def mark_click_processed(self, click_id: int, at: datetime) -> bool:
        """Compare-and-set unprocessed → processed; False when it was marked already."""
        statement = (
            update(Click)
            .where(col(Click.id) == click_id, col(Click.processed_at).is_(None))
            .values(processed_at=at)
        )
        return bool((await self.session.exec(statement)).rowcount)


def _in_hand() -> Select[
    tuple[Approval, Decision, ProposedAction, int, bool, Run, Intent, AgentPause | None]
]:
    """The read of :meth:`ApprovalRepository.lock_approval_in_hand` (the approval bound as ``approval_id``),
    without the lock."""
    other, others_action = aliased(Approval), aliased(ProposedAction)
    sharing = (
        sql_select(func.count())
        .select_from(other)
        .join(others_action, col(others_action.id) == col(other.action_id))
        .where(
            col(others_action.run_id) == col(ProposedAction.run_id),
            col(other.message_ts) == col(Approval.message_ts),
        )
        .scalar_subquery()
    )
    edited = (
        sql_select(col(ActionEdit.id))
        .where(
            col(ActionEdit.action_id) == col(Approval.action_id),
            col(ActionEdit.params_before).is_not(None),
        )
        .exists()
    )
    return (
        select(Approval, Decision, ProposedAction, sharing)
        .add_columns(edited, Run, Intent, AgentPause)
        .join(Decision, col(Decision.id) == col(Approval.decision_id))
        .join(ProposedAction, col(ProposedAction.id) == col(Approval.action_id))
        .join(Run, col(Run.id) == col(ProposedAction.run_id))
        .join(Intent, col(Intent.id) == col(Run.intent_id))
        .outerjoin(AgentPause, col(AgentPause.agent) == col(Run.agent))
        .where(col(Approval.id) == bindparam("approval_id"))
        .execution_options(populate_existing=True)
    )


# Built once: a statement remembers its cache key, so each click skips building it and walking it for that key.
_IN_HAND = _in_hand()
_SHOW_AT = (
    update(Approval)
    .where(col(Approval.id) == bindparam("approval_id"))
    .values(message_ts=bindparam("set_message_ts"))
    .execution_options(synchronize_session=False)
)
_SPEND = (
    update(Capability)
    .where(
        col(Capability.action_id) == bindparam("spend_action_id"),
        col(Capability.action_name) == bindparam("spend_name"),
        col(Capability.params_hash) == bindparam("spend_hash"),
        col(Capability.spent_at).is_(None),
        col(Capability.expires_at) > bindparam("now"),
    )
    .values(spent_at=bindparam("now"))
    .execution_options(synchronize_session=False)
)
_DECIDE = (
    update(Approval)
    .where(col(Approval.id) == bindparam("approval_id"), col(Approval.status) == ApprovalStatus.PENDING)
    .values(
        status=bindparam("set_status"),
        decided_by=bindparam("set_decided_by"),
        decided_at=bindparam("set_decided_at"),
    )
    .execution_options(synchronize_session=False)
)
