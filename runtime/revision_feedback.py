"""The feedback a revision run is planned with: the rejected action, who rejected it and why, and the rest of the
first plan. Looked up by the run, so every planning of it (the first, and after a pause, a budget grant or a
crash) follows the reviewer."""

from __future__ import annotations

from functools import partial
from zoneinfo import ZoneInfo

from agents.base import Feedback
from agents.dates import describe
from connectors.registry import ConnectorRegistry
from storage.records import Approval, ProposedAction
from storage.rejection_reasons import RejectionReasons
from storage.unit_of_work import UnitOfWorkFactory


async def revision_feedback(
    units: UnitOfWorkFactory, registry: ConnectorRegistry, zone: ZoneInfo, run_id: int
) -> Feedback | None:
    """The feedback of the reason whose revision is ``run_id``; None for a run that revises nothing."""
    async with units.read() as uow:
        reason = await RejectionReasons(uow.session).of_run(run_id)
        approval = await uow.get(Approval, reason.approval_id) if reason else None
        rejected = await uow.get(ProposedAction, approval.action_id) if approval else None
        plan = await uow.runs.actions_for_run(rejected.run_id) if rejected else []
    if reason is None or rejected is None:
        return None
    action = registry.validate(rejected.name, rejected.params)
    return Feedback(
        action=rejected.name,
        summary=action.summary_in(partial(describe, zone=zone)),
        params=rejected.params,
        rejected_by=reason.user,
        reason=reason.reason,
        others=tuple((a.name, a.params, str(a.status)) for a in plan if a.id != rejected.id),
    )
