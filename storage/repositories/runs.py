"""Intents, runs and the actions they propose: their statuses, the amounts already asked for on an order, a payment
or by a requester, and paused agents."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cache
from typing import Any

from sqlalchemy import (
    BindParameter,
    ColumnElement,
    CompoundSelect,
    Select,
    Update,
    bindparam,
    case,
    literal_column,
    or_,
    union_all,
    update,
)
from sqlalchemy import select as sql_select
from sqlalchemy.orm.attributes import set_committed_value
from sqlalchemy.orm.util import identity_key
from sqlmodel import col, select

from storage.escalations import open_in_intents_thread
from storage.records import (
    RUN_STATUS_FROM_ACTIONS,
    RUN_STATUS_OTHERWISE,
    ActionStatus,
    AgentPause,
    Decision,
    Intent,
    IntentStatus,
    ProposedAction,
    Run,
    RunStatus,
    utcnow,
)
from storage.repositories.base import SessionRepository, audited_write, core_connection

# The compare-and-set of RunRepository.claim_intent_in_thread (the intent bound as ``intent_id``), built once: a
# statement remembers its cache key, so each claim skips building it and walking it for that key.
_CLAIM_IN_THREAD = (
    update(Intent)
    .where(
        col(Intent.id) == bindparam("intent_id"),
        col(Intent.status) == IntentStatus.RECEIVED,
        col(Intent.thread_ts).is_not(None),
    )
    .values(status=IntentStatus.DISPATCHED)
    .returning(Intent, open_in_intents_thread(), sql_select(col(AgentPause.agent)).exists())
    .execution_options(synchronize_session=False)
)

# An action moved to a status (bound as ``set_status``), written past the session (audited_write), built once.
MOVE_ACTION = (
    update(ProposedAction)
    .where(col(ProposedAction.id) == bindparam("action_id"))
    .values(status=bindparam("set_status"))
    .execution_options(synchronize_session=False)
)

# Which part of :meth:`RunRepository.money_moved`'s union a row answers.
_TODAY, _ON_ORDER, _ON_PAYMENT = "today", "order", "payment"


@dataclass(frozen=True)
class MoneyMoved:
    """What other runs moved, as a judgement sees it: ``amount`` summed on an order, on a payment, and per action
    name by a requester today."""

    on_order: float
    on_payment: float
    requester_today: dict[str, float]


@dataclass(frozen=True)
class ClaimedIntent:
    """An intent just claimed, with what its thread and the agents stood at when it was."""

    intent: Intent
    open_escalation: int | None  # the id of its thread's newest escalation waiting for a person
    # Whether any agent was paused: when none was, the run's agent needs no pause read before it plans.
    agents_paused: bool


class RunRepository(SessionRepository):
    __slots__ = ()

    async def runs_for_intent(self, intent_id: int) -> Sequence[Run]:
        return (await self.session.exec(select(Run).where(Run.intent_id == intent_id))).all()

    async def actions_for_run(self, run_id: int) -> Sequence[ProposedAction]:
        query = select(ProposedAction).where(ProposedAction.run_id == run_id).order_by(col(ProposedAction.id))
        return (await self.session.exec(query)).all()

    async def money_moved(
        self,
        action_name: str,
        requester: str,
        *,
        on_order: int | None,
        on_payment: str | None,
        moved: Sequence[str],
        since: datetime,
        counted: Sequence[str],
        other_than_run: int,
    ) -> MoneyMoved:
        """What other runs than this one moved, in one statement: the sum of ``amount`` over this action's records
        on the order and on the payment (each when given) in the ``moved`` statuses, and per action name over the
        requester's actions since then in the ``counted`` statuses."""
        statement = _money_moved(on_order is not None, on_payment is not None)
        parameters = {
            "action_name": action_name,
            "requester": requester,
            "on_order": str(on_order),
            "on_payment": on_payment,
            "moved": moved,
            "since": since,
            "counted": counted,
            "other_than_run": other_than_run,
        }
        found: dict[str, list[tuple[str, Mapping[str, Any]]]] = {_TODAY: [], _ON_ORDER: [], _ON_PAYMENT: []}
        connection = await self.session.connection()
        for tag, name, params in await connection.execute(statement, parameters):
            found[tag].append((name, params))
        today: dict[str, float] = {}
        for name, params in found[_TODAY]:
            today[name] = today.get(name, 0.0) + _sum_amounts([params])
        return MoneyMoved(
            on_order=_sum_amounts(params for _, params in found[_ON_ORDER]),
            on_payment=_sum_amounts(params for _, params in found[_ON_PAYMENT]),
            requester_today=today,
        )

    async def lock_action_status(self, action_id: int) -> ActionStatus | None:
        """The action's status, its row locked (PostgreSQL) until this transaction ends: a booking that moves it
        waits for this transaction, or this one sees what the booking wrote."""
        query = select(ProposedAction.status).where(ProposedAction.id == action_id).with_for_update()
        status = (await self.session.exec(query)).first()
        return None if status is None else ActionStatus(status)

    async def decisions_for_action(self, action_id: int) -> Sequence[Decision]:
        query = select(Decision).where(Decision.action_id == action_id).order_by(col(Decision.id))
        return (await self.session.exec(query)).all()

    async def intents_with_status(self, status: str) -> Sequence[Intent]:
        query = select(Intent).where(Intent.status == status).order_by(col(Intent.id))
        return (await self.session.exec(query)).all()

    async def unplanned_intents(self, besides: int, *, unowned: bool) -> Sequence[Intent]:
        """The intents not yet planned that the lease ``besides`` does not own, and with ``unowned`` those that
        name no owner: what a recovery sweep may take over. The process holding ``besides`` plans its own, so
        they are not read: a sweep then costs as much as what others left, not as much as this process's
        backlog (thousands of rows, each made a record, every few seconds while a burst lasts)."""
        owner = col(Intent.owner)
        others = owner != besides  # NULL is not != anything: rows naming no owner are left out by this
        query = (
            select(Intent)
            .where(
                Intent.status == IntentStatus.RECEIVED, or_(others, owner.is_(None)) if unowned else others
            )
            .order_by(col(Intent.id))
        )
        return (await self.session.exec(query)).all()

    async def newest_run_over_budget(self, channel: str) -> int | None:
        query = (
            select(Run.id)
            .join(Intent, col(Intent.id) == Run.intent_id)
            .where(col(Run.status) == RunStatus.OVER_BUDGET, col(Intent.channel) == channel)
            .order_by(col(Run.id).desc())
        )
        return (await self.session.exec(query)).first()

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
        return await self.session.get(AgentPause, agent)

    async def paused_agents(self) -> list[AgentPause]:
        return list((await self.session.exec(select(AgentPause).order_by(col(AgentPause.agent)))).all())

    async def paused_runs(self, agent: str) -> list[Run]:
        query = (
            select(Run)
            .where(col(Run.status) == RunStatus.PAUSED, col(Run.agent) == agent)
            .order_by(col(Run.id))
        )
        return list((await self.session.exec(query)).all())

    async def runs_planning_without_actions(self, stale_before: datetime) -> list[Run]:
        has_actions = select(ProposedAction.id).where(ProposedAction.run_id == Run.id).exists()
        query = select(Run).where(
            col(Run.status) == RunStatus.PLANNING, col(Run.updated_at) < stale_before, ~has_actions
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

    async def set_action_status(self, action_id: int, status: ActionStatus) -> ProposedAction:
        """Move an action to ``status`` and its run to the state that follows from all its actions."""
        action = await self.session.get(ProposedAction, action_id)
        assert action is not None, f"no action {action_id}"
        if action.status != status:
            # The action held is brought up to date with the row as written (see audited_write).
            await audited_write(self.session, MOVE_ACTION, {"action_id": action_id, "set_status": status})
        await self.refresh_run_status(action.run_id)
        return action

    async def refresh_run_status(self, run_id: int, **values: Any) -> RunStatus | None:
        """Give the run the status its actions' statuses make, with ``values`` for other columns that move it
        on (:func:`run_status_update`). A copy of the run this session holds is brought up to date. Returns the
        status written, None when nothing was."""
        stamped = {**values, "updated_at": values.get("updated_at", utcnow())}
        statement = _refresh_run_status(tuple(sorted(stamped)), only_if_moved=not values)
        parameters = run_status_parameters(run_id, stamped)
        connection = await core_connection(self.session)  # the run is not audited
        written = (await connection.execute(statement, parameters)).scalar_one_or_none()
        if written is None:
            return None
        new_status = RunStatus(written)
        held = self.session.identity_map.get(identity_key(Run, run_id))
        if held is not None:
            for name, value in {**stamped, "status": new_status}.items():
                set_committed_value(held, name, value)
        return new_status

    async def update_run(self, run_id: int, **values: Any) -> None:
        """Set these columns of the run, in one UPDATE (nothing read first)."""
        await self.session.exec(
            update(Run)
            .where(col(Run.id) == run_id)
            .values(**values)
            .execution_options(synchronize_session=False)
        )

    async def claim_intent(self, intent_id: int) -> bool:
        """Compare-and-set received → dispatched, so an intent is planned by one worker only."""
        return await self._move_received_intent(intent_id, IntentStatus.DISPATCHED)

    async def claim_intent_in_thread(self, intent_id: int) -> ClaimedIntent | None:
        """:meth:`claim_intent` for an intent that has its thread already, returning it as it now stands with what
        starting its run looks at, all in one UPDATE … RETURNING; None when it has moved on, or has no thread
        yet."""
        row = (await self.session.exec(_CLAIM_IN_THREAD, params={"intent_id": intent_id})).first()
        return None if row is None else ClaimedIntent(row[0], row[1], bool(row[2]))

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


def _tagged(tag: str) -> Select[tuple[str, str, dict[str, Any]]]:
    """The name and parameters of proposed actions, each row saying which part of a union it answers."""
    return sql_select(literal_column(f"'{tag}'"), col(ProposedAction.name), col(ProposedAction.params))


@cache
def _money_moved(on_order: bool, on_payment: bool) -> CompoundSelect[tuple[str, str, dict[str, Any]]]:
    """The union :meth:`RunRepository.money_moved` reads, with or without its parts on the order and on the
    payment, its arguments bound by their names. Built once for each shape."""
    elsewhere = col(ProposedAction.run_id) != bindparam("other_than_run")
    this_action = (
        col(ProposedAction.name) == bindparam("action_name"),
        col(ProposedAction.status).in_(bindparam("moved", expanding=True)),
        elsewhere,
    )
    parts = [
        _tagged(_TODAY)
        .join(Run, col(Run.id) == col(ProposedAction.run_id))
        .join(Intent, col(Intent.id) == col(Run.intent_id))
        .where(
            col(Intent.user) == bindparam("requester"),
            col(ProposedAction.created_at) >= bindparam("since"),
            col(ProposedAction.status).in_(bindparam("counted", expanding=True)),
            elsewhere,
        )
    ]
    if on_order:
        # Compared as text: a cast to integer could fail on another action's order_id that is no number, and
        # PostgreSQL does not promise to filter by name first.
        on = col(ProposedAction.params)["order_id"].as_string() == bindparam("on_order")
        parts.append(_tagged(_ON_ORDER).where(*this_action, on))
    if on_payment:
        on = col(ProposedAction.params)["payment"].as_string() == bindparam("on_payment")
        parts.append(_tagged(_ON_PAYMENT).where(*this_action, on))
    return union_all(*parts)


def _sum_amounts(params: Iterable[Mapping[str, Any]]) -> float:
    return round(sum(float(p["amount"]) for p in params if isinstance(p.get("amount"), int | float)), 2)


def _having(statuses: Sequence[str]) -> ColumnElement[bool]:
    # A comparison per status rather than IN over a list: SQLAlchemy expands a list's IN into its SQL again at
    # each execution, and this runs at each step of every run.
    status = col(ProposedAction.status)
    return (
        sql_select(col(ProposedAction.id))
        .where(col(ProposedAction.run_id) == col(Run.id), or_(*(status == one for one in statuses)))
        .exists()
    )


# The status a run's actions' statuses make (RUN_STATUS_FROM_ACTIONS), the actions looked at by the database.
_STATUS_FROM_ACTIONS = case(
    *((_having(actions), run_status) for run_status, actions in RUN_STATUS_FROM_ACTIONS),
    else_=RUN_STATUS_OTHERWISE,
)


@cache
def run_status_update(columns: tuple[str, ...], *, only_if_moved: bool) -> Update:
    """The UPDATE that gives the run (bound as ``run_id``) the status its actions' statuses make, and other
    ``columns`` of it their values (bound as ``set_<column>``, :func:`run_status_parameters`);
    ``only_if_moved``: it leaves a run that has that status already alone. Built once for each shape: a
    statement remembers its cache key, so executing it again skips building it and walking it for that key."""
    moving = col(Run.id) == bindparam("run_id")
    if only_if_moved:
        moving = moving & (col(Run.status) != _STATUS_FROM_ACTIONS)
    setting: dict[str, BindParameter[Any]] = {column: bindparam(f"set_{column}") for column in columns}
    return (
        update(Run)
        .where(moving)
        .values(status=_STATUS_FROM_ACTIONS, **setting)
        .execution_options(synchronize_session=False)
    )


def run_status_parameters(run_id: int, values: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of :func:`run_status_update` for this run and these values of its columns."""
    return {"run_id": run_id, **{f"set_{column}": value for column, value in values.items()}}


@cache
def _refresh_run_status(columns: tuple[str, ...], *, only_if_moved: bool) -> Update:
    return run_status_update(columns, only_if_moved=only_if_moved).returning(col(Run.status))
