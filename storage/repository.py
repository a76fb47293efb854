"""Queries and the few writes that must be atomic (dedupe, compare-and-set, claims)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Insert, Select, Table, and_, case, func, union_all, update
from sqlalchemy import select as sql_select
from sqlalchemy.orm import Mapped
from sqlmodel import SQLModel, col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from storage.action_edits import ActionEdits
from storage.records import (
    ActionStatus,
    AgentPause,
    Approval,
    ApprovalStatus,
    ApprovalVote,
    BudgetAccount,
    Capability,
    Click,
    Decision,
    Execution,
    ExecutionStatus,
    Incident,
    Intent,
    IntentStatus,
    LlmCall,
    Once,
    PolicyVersion,
    ProposedAction,
    Run,
    RunStatus,
    UndoRequest,
    run_status_for,
    utcnow,
)

Record = TypeVar("Record", bound=SQLModel)
Owned = TypeVar("Owned", Intent, Run, Execution)  # work that records the lease of the process doing it


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


class Repository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def add(self, record: Record) -> Record:
        self.session.add(record)
        await self.session.flush()
        return record

    async def get(self, model: type[Record], key: Any) -> Record | None:
        return await self.session.get(model, key)

    async def insert_if_absent(self, model: type[SQLModel], values: dict[str, Any]) -> bool:
        """INSERT … ON CONFLICT DO NOTHING; True when this call inserted the row."""
        table: Table = model.__table__  # type: ignore[attr-defined]
        dialect = self.session.bind.dialect.name if self.session.bind else "sqlite"
        # Imported here: the PostgreSQL dialect is slow to import, and a store on SQLite never needs it.
        statement: Insert
        if dialect == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            statement = pg_insert(table).values(**values).on_conflict_do_nothing()
        else:
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            statement = sqlite_insert(table).values(**values).on_conflict_do_nothing()
        result = await self.session.exec(statement)
        return bool(result.rowcount)

    async def first_time(self, key: str) -> bool:
        """True for the one caller that claims ``key`` first; False for every later or concurrent one."""
        return await self.insert_if_absent(Once, {"key": key, "created_at": utcnow()})

    async def forget_once(self, key: str) -> None:
        """Release a claimed key whose work could not be done, so a later attempt may claim it."""
        once = await self.get(Once, key)
        if once is not None:
            await self.session.delete(once)

    async def runs_for_intent(self, intent_id: int) -> Sequence[Run]:
        return (await self.session.exec(select(Run).where(Run.intent_id == intent_id))).all()

    async def actions_for_run(self, run_id: int) -> Sequence[ProposedAction]:
        query = select(ProposedAction).where(ProposedAction.run_id == run_id).order_by(col(ProposedAction.id))
        return (await self.session.exec(query)).all()

    async def amount_on_order(
        self, action_name: str, order_id: int, statuses: Sequence[str], *, other_than_run: int
    ) -> float:
        """The sum of ``amount`` over this action's records on this order, in these statuses, outside a run."""
        query = select(ProposedAction.params).where(
            ProposedAction.name == action_name,
            col(ProposedAction.status).in_(statuses),
            col(ProposedAction.params)["order_id"].as_integer() == order_id,
            ProposedAction.run_id != other_than_run,
        )
        return _sum_amounts(await self.session.exec(query))

    async def amount_on_payment(
        self, action_name: str, payment: str, statuses: Sequence[str], *, other_than_run: int
    ) -> float:
        """The sum of ``amount`` over this action's records on this payment, in these statuses, outside a run."""
        query = select(ProposedAction.params).where(
            ProposedAction.name == action_name,
            col(ProposedAction.status).in_(statuses),
            col(ProposedAction.params)["payment"].as_string() == payment,
            ProposedAction.run_id != other_than_run,
        )
        return _sum_amounts(await self.session.exec(query))

    async def amounts_by_requester(
        self, requester: str, since: datetime, statuses: Sequence[str], *, other_than_run: int
    ) -> dict[str, float]:
        """Per action name, the sum of ``amount`` over the requester's actions since then, outside a run."""
        query = (
            select(ProposedAction.name, ProposedAction.params)
            .join(Run, col(Run.id) == ProposedAction.run_id)
            .join(Intent, col(Intent.id) == Run.intent_id)
            .where(
                Intent.user == requester,
                col(ProposedAction.created_at) >= since,
                col(ProposedAction.status).in_(statuses),
                ProposedAction.run_id != other_than_run,
            )
        )
        totals: dict[str, float] = {}
        for name, params in await self.session.exec(query):
            totals[name] = totals.get(name, 0.0) + _sum_amounts([params])
        return totals

    async def decisions_for_action(self, action_id: int) -> Sequence[Decision]:
        query = select(Decision).where(Decision.action_id == action_id).order_by(col(Decision.id))
        return (await self.session.exec(query)).all()

    async def executions_for_action(self, action_id: int) -> Sequence[Execution]:
        query = select(Execution).where(Execution.action_id == action_id).order_by(col(Execution.id))
        return (await self.session.exec(query)).all()

    async def execution_by_key(self, key: str) -> Execution | None:
        return (await self.session.exec(select(Execution).where(Execution.idempotency_key == key))).first()

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

    async def intents_with_status(self, status: str) -> Sequence[Intent]:
        query = select(Intent).where(Intent.status == status).order_by(col(Intent.id))
        return (await self.session.exec(query)).all()

    async def newest_run_over_budget(self, channel: str) -> int | None:
        query = (
            select(Run.id)
            .join(Intent, col(Intent.id) == Run.intent_id)
            .where(col(Run.status) == RunStatus.OVER_BUDGET, col(Intent.channel) == channel)
            .order_by(col(Run.id).desc())
        )
        return (await self.session.exec(query)).first()

    async def pending_approvals_in_thread(self, channel: str, thread_ts: str) -> Sequence[Approval]:
        query = select(Approval).where(
            Approval.status == ApprovalStatus.PENDING,
            Approval.channel == channel,
            Approval.thread_ts == thread_ts,
        )
        return (await self.session.exec(query.order_by(col(Approval.id)))).all()

    async def newest_run_over_budget_in_thread(self, channel: str, thread_ts: str) -> int | None:
        query = (
            select(Run.id)
            .join(Intent, col(Intent.id) == Run.intent_id)
            .where(
                col(Run.status) == RunStatus.OVER_BUDGET,
                col(Intent.channel) == channel,
                col(Intent.thread_ts) == thread_ts,
            )
            .order_by(col(Run.id).desc())
        )
        return (await self.session.exec(query)).first()

    async def is_paused(self, agent: str) -> AgentPause | None:
        return await self.get(AgentPause, agent)

    async def paused_agents(self) -> list[AgentPause]:
        return list((await self.session.exec(select(AgentPause).order_by(col(AgentPause.agent)))).all())

    async def paused_runs(self, agent: str) -> list[Run]:
        query = (
            select(Run)
            .where(col(Run.status) == RunStatus.PAUSED, col(Run.agent) == agent)
            .order_by(col(Run.id))
        )
        return list((await self.session.exec(query)).all())

    async def runs_by_status(self, statuses: Sequence[str], limit: int) -> list[Run]:
        query = select(Run).where(col(Run.status).in_(statuses)).order_by(col(Run.id).desc()).limit(limit)
        return list((await self.session.exec(query)).all())

    async def runs_planning_without_actions(self, stale_before: datetime) -> list[Run]:
        has_actions = select(ProposedAction.id).where(ProposedAction.run_id == Run.id).exists()
        query = select(Run).where(
            col(Run.status) == RunStatus.PLANNING, col(Run.updated_at) < stale_before, ~has_actions
        )
        return list((await self.session.exec(query)).all())

    async def approvals_without_message(self, stale_before: datetime) -> list[Approval]:
        query = select(Approval).where(
            col(Approval.status) == ApprovalStatus.PENDING,
            col(Approval.message_ts).is_(None),
            col(Approval.created_at) < stale_before,
        )
        return list((await self.session.exec(query)).all())

    async def approved_actions_without_execution(self) -> list[int]:
        has_execution = select(Execution.id).where(Execution.action_id == ProposedAction.id).exists()
        query = select(ProposedAction.id).where(
            col(ProposedAction.status) == ActionStatus.APPROVED, ~has_execution
        )
        return [action_id for action_id in (await self.session.exec(query)).all() if action_id is not None]

    async def executions_in_flight(self, stale_before: datetime) -> list[Execution]:
        query = select(Execution).where(
            col(Execution.status) == ExecutionStatus.STARTED, col(Execution.started_at) < stale_before
        )
        return list((await self.session.exec(query)).all())

    async def runs_of_actions(self, action_ids: Sequence[int]) -> dict[int, Run]:
        """Each action's run, by action id."""
        if not action_ids:
            return {}
        query = (
            select(ProposedAction.id, Run)
            .join(Run, col(Run.id) == ProposedAction.run_id)
            .where(col(ProposedAction.id).in_(action_ids))
        )
        return {action_id: run for action_id, run in (await self.session.exec(query)).all() if action_id}

    async def take_over(self, rows: Sequence[Owned], owner: int) -> set[int]:
        """Make ``owner`` the owner of each row still owned by whoever owned it when it was read; returns the
        ids taken. A compare-and-set: of processes taking over the same work, one does."""
        taken: set[int] = set()
        for row in {row.id: row for row in rows}.values():
            assert row.id is not None
            model = type(row)
            previous = col(model.owner).is_(None) if row.owner is None else col(model.owner) == row.owner
            statement = update(model).where(col(model.id) == row.id, previous).values(owner=owner)
            if (await self.session.exec(statement)).rowcount:
                taken.add(row.id)
        return taken

    async def run_counts_by_status(self) -> dict[str, int]:
        query = select(Run.status, func.count()).group_by(Run.status)
        return {status: count for status, count in (await self.session.exec(query)).all()}

    async def set_action_status(self, action_id: int, status: ActionStatus) -> ProposedAction:
        """Move an action to ``status`` and its run to the state that follows from all its actions."""
        action = await self.get(ProposedAction, action_id)
        assert action is not None, f"no action {action_id}"
        action.status = status
        self.session.add(action)
        await self.session.flush()
        await self.refresh_run_status(action.run_id)
        return action

    async def refresh_run_status(self, run_id: int) -> None:
        run = await self.get(Run, run_id)
        assert run is not None, f"no run {run_id}"
        run.status = run_status_for({action.status for action in await self.actions_for_run(run_id)})
        run.updated_at = utcnow()
        self.session.add(run)

    async def claim_intent(self, intent_id: int) -> bool:
        """Compare-and-set received → dispatched, so an intent is planned by one worker only."""
        return await self._move_received_intent(intent_id, IntentStatus.DISPATCHED)

    async def fail_intent(self, intent_id: int) -> bool:
        """Compare-and-set received → failed; False when the intent had already moved on."""
        return await self._move_received_intent(intent_id, IntentStatus.FAILED)

    async def _move_received_intent(self, intent_id: int, status: IntentStatus) -> bool:
        """Compare-and-set from received: of concurrent workers, one moves the intent on."""
        statement = (
            update(Intent)
            .where(col(Intent.id) == intent_id, col(Intent.status) == IntentStatus.RECEIVED)
            .values(status=status)
        )
        return bool((await self.session.exec(statement)).rowcount)

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
            await self.insert_if_absent(BudgetAccount, account.model_dump())
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
        return await self.get(BudgetAccount, key)

    async def budget_accounts(self, periods: Sequence[str]) -> list[BudgetAccount]:
        query = (
            select(BudgetAccount)
            .where(col(BudgetAccount.period).in_(periods))
            .order_by(col(BudgetAccount.key))
        )
        return list((await self.session.exec(query)).all())

    async def mint_capability(self, capability: Capability) -> None:
        await self.insert_if_absent(Capability, capability.model_dump(exclude={"id"}))

    async def spend_capability(
        self, action_id: int, action_name: str, params_hash: str, now: datetime
    ) -> bool:
        """Spend the action's capability: only once, only unexpired, only for exactly these parameters."""
        statement = (
            update(Capability)
            .where(
                col(Capability.action_id) == action_id,
                col(Capability.action_name) == action_name,
                col(Capability.params_hash) == params_hash,
                col(Capability.spent_at).is_(None),
                col(Capability.expires_at) > now,
            )
            .values(spent_at=now)
        )
        return bool((await self.session.exec(statement)).rowcount)

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
        return await self.insert_if_absent(
            ApprovalVote, {"approval_id": approval_id, "user": user, "created_at": utcnow()}
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

    async def decide_approval(
        self, approval_id: int, status: ApprovalStatus, actor: str, at: datetime
    ) -> bool:
        """Compare-and-set pending → decided; exactly one of any number of concurrent callers gets True."""
        statement = (
            update(Approval)
            .where(col(Approval.id) == approval_id, col(Approval.status) == ApprovalStatus.PENDING)
            .values(status=status, decided_by=actor, decided_at=at)
        )
        result = await self.session.exec(statement)
        return bool(result.rowcount)

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


def _distinct_values(column: Mapped[Any]) -> Select[Any]:
    """Every value of an indexed column, found by one index seek per value (from the smallest, each the least
    one greater than the last) instead of reading every row."""
    values = sql_select(func.min(column).label("value")).cte("distinct_values", recursive=True)
    following = sql_select(func.min(column)).where(column > values.c.value).scalar_subquery()
    values = values.union_all(sql_select(following).where(values.c.value.is_not(None)))
    return sql_select(values.c.value).where(values.c.value.is_not(None))


def _sum_amounts(params: Iterable[Mapping[str, Any]]) -> float:
    return round(sum(float(p["amount"]) for p in params if isinstance(p.get("amount"), int | float)), 2)


# --- Replay: policy decisions read back with what they saw, and the policy versions that made them. ---


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


class ReplayQueries:
    """Reads for `aios replay` and `/aios replay`; they never write."""

    def __init__(self, session: AsyncSession) -> None:
        self.session = session

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


# --- Undo: people's requests to take an executed action back, and the inverse actions they filed. ---


class UndoQueries:
    """Reads and the one claim behind `/aios undo` and the Undo button."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo
        self.session = repo.session

    async def latest_request(self, action_id: int) -> UndoRequest | None:
        query = (
            select(UndoRequest)
            .where(UndoRequest.action_id == action_id)
            .order_by(col(UndoRequest.attempt).desc())
            .limit(1)
        )
        return (await self.session.exec(query)).first()

    async def request_of_intent(self, intent_id: int) -> UndoRequest | None:
        query = select(UndoRequest).where(UndoRequest.intent_id == intent_id)
        return (await self.session.exec(query)).first()

    async def undos_of(self, action_id: int) -> list[ProposedAction]:
        """The inverse actions filed to undo this one, oldest first."""
        query = (
            select(ProposedAction)
            .where(ProposedAction.undoes_action_id == action_id)
            .order_by(col(ProposedAction.id))
        )
        return list((await self.session.exec(query)).all())

    async def undo_filed_for(self, intent_id: int) -> ProposedAction | None:
        """The inverse action a request's intent was filed as, once it has been."""
        query = (
            select(ProposedAction)
            .join(Run, col(Run.id) == ProposedAction.run_id)
            .where(Run.intent_id == intent_id, col(ProposedAction.undoes_action_id).is_not(None))
        )
        return (await self.session.exec(query)).first()

    async def claim(self, action_id: int, attempt: int, intent: Intent) -> bool:
        """Store the request's intent and claim the attempt; False (and nothing to commit) when another
        request took this attempt first."""
        await self.repo.add(intent)
        assert intent.id is not None
        return await self.repo.insert_if_absent(
            UndoRequest,
            {
                "action_id": action_id,
                "attempt": attempt,
                "intent_id": intent.id,
                "requested_by": intent.user,
                "created_at": utcnow(),
            },
        )
