"""Who has an App Home, and what their Home shows of their own requests.

A Home is published only when it differs from the one published last: ``claim_publish`` moves the stored hash
from the one the caller read to the new one, a compare-and-set, so of two replicas (or two refreshes) drawing the
same change one publishes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.records import Approval, Decision, HomeViewer, Intent, ProposedAction, Run


@dataclass(frozen=True)
class RequestState:
    """One of a person's requests as their Home lists it: the intent and its newest run, if it has one."""

    intent: Intent
    run: Run | None


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

    async def claim_publish(self, user: str, expected: str | None, new: str | None) -> bool:
        """Set the published hash to ``new`` if it is still ``expected``; True for the caller that did."""
        current = col(HomeViewer.last_published_hash)
        statement = (
            update(HomeViewer)
            .where(
                col(HomeViewer.user) == user, current.is_(None) if expected is None else current == expected
            )
            .values(last_published_hash=new)
        )
        return bool((await self.session.exec(statement)).rowcount)

    async def recent_requests(self, user: str, limit: int) -> list[RequestState]:
        """The newest ``limit`` intents ``user`` asked, newest first, each with its newest run."""
        intents = (
            await self.session.exec(
                select(Intent).where(col(Intent.user) == user).order_by(col(Intent.id).desc()).limit(limit)
            )
        ).all()
        runs: dict[int, Run] = {}
        if intents:
            ids: Sequence[int] = [intent.id for intent in intents if intent.id is not None]
            for run in (
                await self.session.exec(select(Run).where(col(Run.intent_id).in_(ids)).order_by(col(Run.id)))
            ).all():
                runs[run.intent_id] = run  # the newest run of each intent last
        return [RequestState(intent, runs.get(intent.id or 0)) for intent in intents]

    async def card_records(self, approvals: Sequence[Approval]) -> dict[int, tuple[ProposedAction, Decision]]:
        """The proposed action and the policy's decision of each approval (what its card shows), by approval id."""
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
        by_action = {action.id: action for action in actions}
        by_decision = {decision.id: decision for decision in decisions}
        return {
            approval.id or 0: (by_action[approval.action_id], by_decision[approval.decision_id])
            for approval in approvals
        }
