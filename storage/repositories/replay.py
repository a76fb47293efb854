"""Replay: policy decisions read back with what they saw, and the policy versions that made them."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from sqlalchemy import and_, func
from sqlalchemy import select as sql_select
from sqlmodel import col, select

from storage.action_edits import ActionEdits
from storage.records import (
    Approval,
    Decision,
    Intent,
    PolicyVersion,
    ProposedAction,
    Run,
)
from storage.repositories.base import SessionRepository


@dataclass(frozen=True)
class DecisionRow:
    decision_id: int
    action_id: int
    run_id: int
    name: str
    params: dict[str, Any]
    verdict: str
    rule_id: str | None
    policy_hash: str | None
    facts: dict[str, Any] | None
    requester: str
    approvers: list[str] | None  # of the approval it asked for, if it asked for one


class ReplayQueries(SessionRepository):
    """Reads for `aios replay` and `/aios replay`; they never write."""

    __slots__ = ()

    def _batch_ids(self, after: int, limit: int, run_id: int | None, since: datetime | None) -> Any:
        """The ids of one batch, from the decision table alone (its primary key in order), so that each batch
        costs its own size: joined first, PostgreSQL would join everything after ``after`` and then sort."""
        query = sql_select(col(Decision.id)).where(col(Decision.kind) == "policy", col(Decision.id) > after)
        if run_id is not None:
            query = query.join(ProposedAction, col(ProposedAction.id) == Decision.action_id).where(
                col(ProposedAction.run_id) == run_id
            )
        if since is not None:
            query = query.where(col(Decision.created_at) >= since)
        return query.order_by(col(Decision.id)).limit(limit).subquery()

    async def policy_decisions(
        self, *, after: int, limit: int, run_id: int | None = None, since: datetime | None = None
    ) -> list[DecisionRow]:
        """One batch of policy decisions with their action, requester and approvers, by decision id: a window
        of any size is read a batch at a time (keyset on the primary key)."""
        batch = self._batch_ids(after, limit, run_id, since)
        query = (
            sql_select(
                *(
                    col(column)
                    for column in (
                        Decision.id,
                        ProposedAction.id,
                        ProposedAction.run_id,
                        ProposedAction.name,
                        ProposedAction.params,
                        Decision.verdict,
                        Decision.rule_id,
                        Decision.policy_hash,
                        Decision.facts,
                        Intent.user,
                        Approval.approver_roles,
                    )
                )
            )
            .join(batch, batch.c.id == Decision.id)
            .join(ProposedAction, col(ProposedAction.id) == Decision.action_id)
            .join(Run, col(Run.id) == ProposedAction.run_id)
            .join(Intent, col(Intent.id) == Run.intent_id)
            # By action (unique, so indexed), then the decision: the approval this verdict asked for.
            .outerjoin(
                Approval,
                and_(col(Approval.action_id) == ProposedAction.id, col(Approval.decision_id) == Decision.id),
            )
            .order_by(col(Decision.id))
        )
        result = await (await self.session.connection()).execute(query)
        rows = [DecisionRow(*row) for row in result.all()]
        # An edited action is replayed with the parameters each decision judged, not the edited ones.
        edits = ActionEdits(self.session)
        edited = await edits.edited_among({row.action_id for row in rows})
        return [
            replace(row, params=await edits.params_when_judged(row.action_id, row.decision_id, row.params))
            if row.action_id in edited
            else row
            for row in rows
        ]

    async def count_policy_decisions(
        self, *, run_id: int | None = None, since: datetime | None = None
    ) -> int:
        query = sql_select(func.count()).select_from(Decision).where(col(Decision.kind) == "policy")
        if run_id is not None:
            query = query.join(ProposedAction, col(ProposedAction.id) == Decision.action_id).where(
                col(ProposedAction.run_id) == run_id
            )
        if since is not None:
            query = query.where(col(Decision.created_at) >= since)
        return int((await (await self.session.connection()).execute(query)).scalar_one())

    async def policy_versions(self, hash_prefix: str, limit: int = 5) -> list[PolicyVersion]:
        """Stored policy versions whose hash starts with ``hash_prefix`` (lower-case hex), oldest first."""
        query = (
            select(PolicyVersion)
            .where(col(PolicyVersion.hash).startswith(hash_prefix, autoescape=True))
            .order_by(col(PolicyVersion.first_seen_at))
            .limit(limit)
        )
        return list((await self.session.exec(query)).all())

    async def latest_policy_hash(self) -> str | None:
        """The hash of the policy that judged most recently: the one in force, as far as the records know."""
        query = (
            select(Decision.policy_hash)
            .where(col(Decision.kind) == "policy")
            .order_by(col(Decision.id).desc())
            .limit(1)
        )
        return (await self.session.exec(query)).first()
