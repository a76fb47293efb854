"""Budget accounts (reserve, settle, grant) and the ledger of model calls: costs, errors, completed runs by period."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, case, func, union_all, update
from sqlalchemy import select as sql_select
from sqlalchemy.orm import Mapped
from sqlmodel import col, select

from storage.records import (
    BudgetAccount,
    Decision,
    Execution,
    ExecutionStatus,
    Incident,
    LlmCall,
    Run,
    RunStatus,
    utcnow,
)
from storage.repositories.base import SessionRepository, insert_if_absent


@dataclass(frozen=True)
class CostRow:
    key: str
    calls: int
    input_tokens: int
    output_tokens: int
    cache_write_tokens: int
    cache_read_tokens: int
    cost_usd: float
    failures: int


def model_spend_of_run(run_id: Any, intent_id: Any) -> ColumnElement[float]:
    """What the model cost for a run, as a scalar subquery on its id and its intent's (values or columns): its own
    calls and those of its intent's routing."""
    return (
        sql_select(func.coalesce(func.sum(LlmCall.cost_usd), 0.0))
        .where(
            col(LlmCall.intent_id) == intent_id,
            (col(LlmCall.run_id) == run_id) | col(LlmCall.run_id).is_(None),
        )
        .scalar_subquery()
    )


class BudgetRepository(SessionRepository):
    __slots__ = ()

    async def model_spend_of_run(self, run: Run) -> float:
        """What the model cost for this run: its own calls and those of its intent's routing."""
        return float((await self.session.exec(select(model_spend_of_run(run.id, run.intent_id)))).one())

    async def llm_costs(
        self, group_by: str, since: datetime, until: datetime | None = None, limit: int | None = None
    ) -> list[CostRow]:
        """Model calls since ``since``, summed per agent, run, requester or model; the costliest first (then by
        key), only the first ``limit`` when given."""
        key = col(
            {
                "agent": LlmCall.agent,
                "run": LlmCall.run_id,
                "requester": LlmCall.requester,
                "model": LlmCall.model,
            }[group_by]
        )
        in_period = and_(col(LlmCall.created_at) >= since, col(LlmCall.created_at) < (until or utcnow()))
        cost = func.sum(LlmCall.cost_usd)
        connection = await self.session.connection()

        def summed(*where: ColumnElement[bool]) -> Select[*tuple[Any, ...]]:
            return (
                sql_select(  # more columns than sqlmodel's typed select() takes
                    key.label("key"),
                    func.count(),
                    func.sum(LlmCall.input_tokens),
                    func.sum(LlmCall.output_tokens),
                    func.sum(LlmCall.cache_creation_tokens),
                    func.sum(LlmCall.cache_read_tokens),
                    cost.label("cost"),
                    func.sum(case((col(LlmCall.outcome) != "ok", 1), else_=0)),
                )
                .where(in_period, *where)
                .group_by(key)
            )

        if group_by == "agent":
            # Each agent's calls in the period are one range of ix_llm_call_agent_period, summed range after range
            # in the index's order; grouping the period's rows instead would sort every one of them.
            groups = summed(key.in_(_distinct_values(key))).subquery()
        elif limit is not None:
            # The costliest keys are picked on the cost alone (ix_llm_call_period); only their calls are then summed
            # in full (for runs, a range of ix_llm_call_run_period each), not every key's. The calls of no run are
            # their own range: an OR with the others would make SQLite read each of them from the table.
            picked = sql_select(key).where(in_period).group_by(key).order_by(cost.desc(), key).limit(limit)
            keys = [k for (k,) in (await connection.execute(picked)).all()]
            parts = [summed(key.in_([k for k in keys if k is not None]))]
            if None in keys:
                parts.append(summed(key.is_(None)))
            groups = union_all(*parts).subquery()
        else:
            groups = summed().subquery()
        query = sql_select(groups).order_by(groups.c.cost.desc(), groups.c.key).limit(limit)
        rows = (await connection.execute(query)).all()
        return [
            CostRow(
                str(k) if k is not None else "-",
                int(n),
                int(i or 0),
                int(o or 0),
                int(w or 0),
                int(r or 0),
                float(c or 0.0),
                int(f or 0),
            )
            for k, n, i, o, w, r, c, f in rows
        ]

    async def error_counts(self, since: datetime, until: datetime) -> dict[str, int]:
        """Failures in a period by kind: model calls by error kind, connector executions, policy denials."""
        outcome = col(LlmCall.outcome)
        # Each error kind's calls in the period are one range of ix_llm_call_outcome_period; the many ok calls
        # are not read at all.
        llm = await self.session.exec(
            select(outcome, func.count())
            .where(
                outcome.in_(_distinct_values(outcome)),
                outcome != "ok",
                col(LlmCall.created_at) >= since,
                col(LlmCall.created_at) < until,
            )
            .group_by(outcome)
        )
        counts = {f"llm:{kind}": int(n) for kind, n in llm.all()}
        failed = await self.session.exec(
            select(func.count())
            .select_from(Execution)
            .where(
                col(Execution.status) == ExecutionStatus.FAILED,
                col(Execution.started_at) >= since,
                col(Execution.started_at) < until,
            )
        )
        denied = await self.session.exec(
            select(func.count())
            .select_from(Decision)
            .where(
                col(Decision.kind) == "policy",
                col(Decision.verdict) == "deny",
                col(Decision.created_at) >= since,
                col(Decision.created_at) < until,
            )
        )
        incidents = await self.session.exec(
            select(Incident.kind, func.count())
            .where(col(Incident.created_at) >= since, col(Incident.created_at) < until)
            .group_by(Incident.kind)
        )
        counts.update({kind: int(n) for kind, n in incidents.all()})
        counts["connector"] = int(failed.one())
        counts["policy_denial"] = int(denied.one())
        return counts

    async def completed_runs(self, since: datetime, until: datetime) -> int:
        result = await self.session.exec(
            select(func.count())
            .select_from(Run)
            .where(
                col(Run.status) == RunStatus.COMPLETED,
                col(Run.updated_at) >= since,
                col(Run.updated_at) < until,
            )
        )
        return int(result.one())

    async def reserve_budget(
        self, accounts: Sequence[BudgetAccount], estimate: float
    ) -> BudgetAccount | None:
        """Reserve ``estimate`` on every account or on none; returns the account it would overdraw.

        The accounts are locked (FOR UPDATE on PostgreSQL; SQLite has one writer at a time), so concurrent
        reservations see each other and together never pass a limit by more than one estimate.
        """
        for account in accounts:
            await insert_if_absent(self.session, BudgetAccount, account.model_dump())
        keys = [account.key for account in accounts]
        query = (
            select(BudgetAccount)
            .where(col(BudgetAccount.key).in_(keys))
            .with_for_update()
            .execution_options(populate_existing=True)
        )
        stored = {row.key: row for row in (await self.session.exec(query)).all()}
        for account in accounts:
            stored[account.key].limit_usd = account.limit_usd  # the policy file is the source of the limit
            if estimate > stored[account.key].available_usd + 1e-12:
                return stored[account.key]
        for row in stored.values():
            row.reserved_usd += estimate
            row.updated_at = utcnow()
            self.session.add(row)
        return None

    async def settle_budget(self, keys: Sequence[str], estimate: float, actual: float) -> list[BudgetAccount]:
        """Replace a reservation by what the call really cost; returns the accounts as they now stand."""
        await self.session.exec(
            update(BudgetAccount)
            .where(col(BudgetAccount.key).in_(keys))
            .values(
                reserved_usd=BudgetAccount.reserved_usd - estimate,
                spent_usd=BudgetAccount.spent_usd + actual,
                updated_at=utcnow(),
            )
        )
        query = (
            select(BudgetAccount)
            .where(col(BudgetAccount.key).in_(keys))
            .execution_options(populate_existing=True)
        )
        return list((await self.session.exec(query)).all())

    async def mark_budget_warned(self, key: str) -> bool:
        """True for the one caller that flips the warning flag, so each warning is said once."""
        statement = (
            update(BudgetAccount)
            .where(col(BudgetAccount.key) == key, col(BudgetAccount.warned).is_(False))
            .values(warned=True)
        )
        return bool((await self.session.exec(statement)).rowcount)

    async def grant_budget(self, key: str, amount: float) -> BudgetAccount | None:
        await self.session.exec(
            update(BudgetAccount)
            .where(col(BudgetAccount.key) == key)
            .values(granted_usd=BudgetAccount.granted_usd + amount, warned=False, updated_at=utcnow())
        )
        query = (
            select(BudgetAccount)
            .where(col(BudgetAccount.key) == key)
            .execution_options(populate_existing=True)
        )
        return (await self.session.exec(query)).first()

    async def budget_account(self, key: str) -> BudgetAccount | None:
        return await self.session.get(BudgetAccount, key)

    async def budget_accounts(self, periods: Sequence[str]) -> list[BudgetAccount]:
        query = (
            select(BudgetAccount)
            .where(col(BudgetAccount.period).in_(periods))
            .order_by(col(BudgetAccount.key))
        )
        return list((await self.session.exec(query)).all())


def _distinct_values(column: Mapped[Any]) -> Select[Any]:
    """Every value of an indexed column, found by one index seek per value (from the smallest, each the least
    one greater than the last) instead of reading every row."""
    values = sql_select(func.min(column).label("value")).cte("distinct_values", recursive=True)
    following = sql_select(func.min(column)).where(column > values.c.value).scalar_subquery()
    values = values.union_all(sql_select(following).where(values.c.value.is_not(None)))
    return sql_select(values.c.value).where(values.c.value.is_not(None))
