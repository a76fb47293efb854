"""A run's state follows from its actions' in one UPDATE: waiting beats running beats failed beats done, and a
run loaded in the same transaction sees its new state; a run that has that state already is not written."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from storage.records import ActionStatus, Intent, ProposedAction, Run, RunStatus
from storage.unit_of_work import UnitOfWorkFactory

A = ActionStatus
CASES = [
    ((A.AWAITING_APPROVAL, A.EXECUTED, A.FAILED), RunStatus.AWAITING_APPROVAL),
    ((A.APPROVED, A.FAILED), RunStatus.EXECUTING),
    ((A.PROPOSED, A.EXECUTED), RunStatus.EXECUTING),
    ((A.FAILED, A.EXECUTED, A.REJECTED), RunStatus.FAILED),
    ((A.EXECUTED, A.REJECTED, A.DENIED), RunStatus.COMPLETED),
    ((A.EXPIRED, A.DENIED), RunStatus.REJECTED),
    ((A.REJECTED,), RunStatus.REJECTED),
    ((A.DENIED, A.COMPENSATED), RunStatus.DENIED),
    ((), RunStatus.DENIED),
]


@pytest.mark.parametrize(("statuses", "state"), CASES)
async def test_a_run_takes_the_state_its_actions_call_for(
    units: UnitOfWorkFactory, statuses: tuple[ActionStatus, ...], state: RunStatus
) -> None:
    async with units() as uow:
        intent = await uow.add(Intent(source="console", channel="C1", user="U1", text="refund"))
        assert intent.id is not None
        run = await uow.add(Run(intent_id=intent.id, agent="support", status=RunStatus.PLANNING))
        assert run.id is not None
        other = await uow.add(Run(intent_id=intent.id, agent="support", status=RunStatus.PLANNING))
        for status in statuses:
            await uow.add(ProposedAction(run_id=run.id, name="shop.refund", status=status))
        await uow.add(ProposedAction(run_id=other.id or 0, name="shop.refund", status=A.AWAITING_APPROVAL))

        assert await uow.runs.refresh_run_status(run.id) == state
        assert run.status == state  # the run in hand, without reading it again
        await uow.commit()
    async with units() as uow:
        stored = await uow.get(Run, run.id)
        assert stored is not None and stored.status == state
        untouched = await uow.get(Run, other.id)
        assert untouched is not None and untouched.status == RunStatus.PLANNING  # another run's actions


async def test_moving_an_action_moves_its_run(units: UnitOfWorkFactory) -> None:
    async with units() as uow:
        intent = await uow.add(Intent(source="console", channel="C1", user="U1", text="refund"))
        run = await uow.add(Run(intent_id=intent.id or 0, agent="support"))
        first = await uow.add(ProposedAction(run_id=run.id or 0, name="shop.refund", status=A.APPROVED))
        await uow.add(ProposedAction(run_id=run.id or 0, name="shop.refund", status=A.EXECUTED))
        await uow.runs.set_action_status(first.id or 0, A.EXECUTED)
        await uow.commit()
    async with units() as uow:
        stored = await uow.get(Run, run.id)
        assert stored is not None and stored.status == RunStatus.COMPLETED


async def test_a_run_in_the_state_its_actions_call_for_is_not_written(units: UnitOfWorkFactory) -> None:
    long_ago = datetime(2020, 1, 1, tzinfo=UTC)
    async with units() as uow:
        intent = await uow.add(Intent(source="console", channel="C1", user="U1", text="refund"))
        run = await uow.add(
            Run(intent_id=intent.id or 0, agent="support", status=RunStatus.EXECUTING, updated_at=long_ago)
        )
        first = await uow.add(ProposedAction(run_id=run.id or 0, name="shop.refund", status=A.APPROVED))
        await uow.add(ProposedAction(run_id=run.id or 0, name="shop.refund", status=A.APPROVED))
        await uow.commit()
    async with units() as uow:
        assert await uow.runs.refresh_run_status(run.id or 0) is None
        await uow.runs.set_action_status(first.id or 0, A.EXECUTED)  # the other still runs
        await uow.commit()
    async with units.read() as uow:
        stored = await uow.get(Run, run.id)
    assert stored is not None and stored.status == RunStatus.EXECUTING
    assert stored.updated_at.replace(tzinfo=UTC) == long_ago


async def test_an_action_changed_in_the_session_and_not_yet_flushed_moves_its_run(
    units: UnitOfWorkFactory,
) -> None:
    """The run's UPDATE goes past the session (the run is not audited): what the session holds is flushed
    first, as the session's own execute would, so the database counts the action as it now is."""
    async with units() as uow:
        intent = await uow.add(Intent(source="console", channel="C1", user="U1", text="refund"))
        run = await uow.add(Run(intent_id=intent.id or 0, agent="support", status=RunStatus.PLANNING))
        action = await uow.add(ProposedAction(run_id=run.id or 0, name="shop.refund", status=A.APPROVED))
        action.status = A.EXECUTED  # in the session only
        uow.session.add(action)
        assert await uow.runs.refresh_run_status(run.id or 0) == RunStatus.COMPLETED
        await uow.commit()
