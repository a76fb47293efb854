"""Who has an App Home, and what their Home shows of their own requests and of the approvals waiting.

A Home is published only when it differs from the one published last. The published hash is stored after the
publish succeeded, as a compare-and-set from the hash read before drawing (``published``): of two replicas that
published one after the other in an order nobody knows, the one whose set fails marks the Home unknown
(``forget_published``), so that the next refresh publishes it again from the newest records.

Every read here serves all the Homes of a refresh at once: one query whatever the number of viewers.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import delete, func, update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.records import (
    ActionEdit,
    Approval,
    ApprovalVote,
    Decision,
    HomeViewer,
    Intent,
    ProposedAction,
    Run,
)

# Stored in place of a hash when nobody knows which view Slack shows: no drawn view's hash equals it.
UNKNOWN_HASH = ""


@dataclass(frozen=True)
class RequestState:
    """One of a person's requests as their Home lists it: the intent and its newest run, if it has one."""

    intent: Intent
    run: Run | None


@dataclass(frozen=True)
class CardRecords:
    """What an approval's card is drawn from: its action, the policy's decision and the edits applied."""

    proposed: ProposedAction
    decision: Decision
    edits: Sequence[ActionEdit]


class HomeViewers:
    """One small repository over the ``home_viewer`` table, on the unit of work's session."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def opened(self, user: str, team: str, at: datetime) -> None:
        """Remember that ``user`` opened their Home now (a first visit adds them)."""
        viewer = await self.session.get(HomeViewer, user)
        if viewer is None:
            self.session.add(HomeViewer(user=user, team=team, opened_at=at))
        else:
            viewer.team, viewer.opened_at = team or viewer.team, at
            self.session.add(viewer)
        await self.session.flush()

    async def since(self, opened_after: datetime) -> list[HomeViewer]:
        """The people who opened their Home after ``opened_after``."""
        query = (
            select(HomeViewer).where(col(HomeViewer.opened_at) > opened_after).order_by(col(HomeViewer.user))
        )
        return list((await self.session.exec(query)).all())

    async def get(self, user: str) -> HomeViewer | None:
        return await self.session.get(HomeViewer, user)

    async def drop(self, user: str) -> None:
        """Forget a viewer Slack says is gone (deleted or deactivated); opening the Home again adds them."""
        await self.session.exec(delete(HomeViewer).where(col(HomeViewer.user) == user))

    async def published(self, user: str, expected: str | None, new: str) -> bool:
        """Set the published hash to ``new`` if it is still ``expected`` (read before drawing); True if set."""
        current = col(HomeViewer.last_published_hash)
        statement = (
            update(HomeViewer)
            .where(
                col(HomeViewer.user) == user, current.is_(None) if expected is None else current == expected
            )
            .values(last_published_hash=new)
        )
        return bool((await self.session.exec(statement)).rowcount)

    async def forget_published(self, user: str) -> None:
        """Whatever Slack shows is unknown: the next refresh publishes this Home whatever it draws."""
        statement = (
            update(HomeViewer).where(col(HomeViewer.user) == user).values(last_published_hash=UNKNOWN_HASH)
        )
        await self.session.exec(statement)

    async def recent_requests(self, users: Collection[str], limit: int) -> dict[str, list[RequestState]]:
        """The newest ``limit`` intents of each of ``users``, newest first, each with its newest run: one query
        for the intents of all of them, one for their runs."""
        if not users:
            return {}
        ranked = (
            select(
                col(Intent.id).label("id"),
                func.row_number()
                .over(partition_by=col(Intent.user), order_by=col(Intent.id).desc())
                .label("rank"),
            )
            .where(col(Intent.user).in_(list(users)))
            .subquery()
        )
        query = (
            select(Intent)
            .join(ranked, col(Intent.id) == ranked.c.id)
            .where(ranked.c.rank <= limit)
            .order_by(col(Intent.id).desc())
        )
        intents = (await self.session.exec(query)).all()
        runs: dict[int, Run] = {}
        if intents:
            ids = [intent.id for intent in intents if intent.id is not None]
            for run in (
                await self.session.exec(select(Run).where(col(Run.intent_id).in_(ids)).order_by(col(Run.id)))
            ).all():
                runs[run.intent_id] = run  # the newest run of each intent last
        requests: dict[str, list[RequestState]] = {user: [] for user in users}
        for intent in intents:
            requests[intent.user].append(RequestState(intent, runs.get(intent.id or 0)))
        return requests

    async def voters(self, approval_ids: Collection[int]) -> dict[int, list[str]]:
        """Who approved so far, by approval, for approvals that need several approvers."""
        if not approval_ids:
            return {}
        query = (
            select(ApprovalVote)
            .where(col(ApprovalVote.approval_id).in_(list(approval_ids)))
            .order_by(col(ApprovalVote.id))
        )
        voters: dict[int, list[str]] = {}
        for vote in (await self.session.exec(query)).all():
            voters.setdefault(vote.approval_id, []).append(vote.user)
        return voters

    async def teams(self, approval_ids: Collection[int]) -> dict[int, str]:
        """The Slack team each approval's request came from (its intent's), by approval; "" when not known."""
        if not approval_ids:
            return {}
        query = (
            select(Approval.id, Intent.team_id)
            .join(ProposedAction, col(ProposedAction.id) == col(Approval.action_id))
            .join(Run, col(Run.id) == col(ProposedAction.run_id))
            .join(Intent, col(Intent.id) == col(Run.intent_id))
            .where(col(Approval.id).in_(list(approval_ids)))
        )
        return {approval_id or 0: team for approval_id, team in (await self.session.exec(query)).all()}

    async def card_records(self, approvals: Sequence[Approval]) -> dict[int, CardRecords]:
        """What each approval's card shows (its action, the policy's decision, the edits applied), by approval
        id: three queries whatever the number of approvals."""
        if not approvals:
            return {}
        action_ids = [approval.action_id for approval in approvals]
        decision_ids = [approval.decision_id for approval in approvals]
        actions = (
            await self.session.exec(select(ProposedAction).where(col(ProposedAction.id).in_(action_ids)))
        ).all()
        decisions = (
            await self.session.exec(select(Decision).where(col(Decision.id).in_(decision_ids)))
        ).all()
        edits: dict[int, list[ActionEdit]] = {}
        applied = select(ActionEdit).where(
            col(ActionEdit.action_id).in_(action_ids),
            col(ActionEdit.processed_at).is_not(None),
            col(ActionEdit.params_before).is_not(None),
        )
        for edit in (await self.session.exec(applied.order_by(col(ActionEdit.id)))).all():
            edits.setdefault(edit.action_id or 0, []).append(edit)
        by_action = {action.id: action for action in actions}
        by_decision = {decision.id: decision for decision in decisions}
        return {
            approval.id or 0: CardRecords(
                by_action[approval.action_id],
                by_decision[approval.decision_id],
                edits.get(approval.action_id, []),
            )
            for approval in approvals
        }

    async def newest_decision(self) -> int:
        """The id of the newest decision of any action (0 when there is none)."""
        return (await self.session.exec(select(func.max(Decision.id)))).one() or 0

    async def decisions_since(self, action_id: int, actor: str, after: int) -> list[Decision]:
        """``actor``'s decisions of the action (votes, approvals, refused clicks) newer than ``after``."""
        query = (
            select(Decision)
            .where(
                col(Decision.action_id) == action_id, col(Decision.actor) == actor, col(Decision.id) > after
            )
            .order_by(col(Decision.id))
        )
        return list((await self.session.exec(query)).all())
