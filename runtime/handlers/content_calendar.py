"""A planned draft becomes a slot of the content calendar: the row is written in the transaction that books the
draft's execution, so a slot exists exactly when its draft does, and a redelivered approval adds nothing."""

from __future__ import annotations

from zoneinfo import ZoneInfo

from agents.scheduling import angle_of
from connectors.actions import CmsCreateDraft
from connectors.registry import ConnectorRegistry
from storage.planned_slots import PlannedSlots
from storage.records import Intent, PlannedSlot, ProposedAction
from storage.unit_of_work import UnitOfWork


async def record_planned_slot(
    uow: UnitOfWork, registry: ConnectorRegistry, zone: ZoneInfo, proposed: ProposedAction, intent: Intent
) -> None:
    """Called in the transaction that books a succeeded execution, with its action and the intent that asked
    for it."""
    if proposed.name != CmsCreateDraft.name or not proposed.params.get("planned_for"):
        return
    action = registry.validate(proposed.name, proposed.params)
    assert isinstance(action, CmsCreateDraft) and action.planned_for is not None and proposed.id is not None
    if await PlannedSlots(uow.session).of_action(proposed.id) is not None:
        return
    uow.session.add(
        PlannedSlot(
            action_id=proposed.id,
            team_id=intent.team_id,
            slug=action.effective_slug(),
            title=action.title,
            angle=angle_of(action.body),
            planned_for=action.planned_for,
            zone=zone.key,
        )
    )
