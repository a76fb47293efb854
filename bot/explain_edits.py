"""What `/aios why` says of edits: the parameters an edited action was first proposed with, each edit (who, what
changed), and refused edits, among the verdicts in the order they were made."""

from __future__ import annotations

import json
from typing import Any

from runtime.mrkdwn import quote
from storage.action_edits import EDIT_REFUSED, ActionEdits
from storage.ids import format_id
from storage.records import Decision, ProposedAction
from storage.unit_of_work import UnitOfWork

DETAIL_QUOTE_MAX = 500


async def first_proposed(uow: UnitOfWork, action: ProposedAction) -> list[str]:
    """The parameters as first proposed, when people have edited them since."""
    applied = await ActionEdits(uow.session).applied_to(action.id or 0)
    if not applied:
        return []
    first = json.dumps(applied[0].params_before, sort_keys=True)
    times = "once" if len(applied) == 1 else f"{len(applied)} times"
    return [f"  – first proposed as `{quote(first, DETAIL_QUOTE_MAX)}`, edited {times} since"]


def edit_line(decision: Decision) -> str | None:
    """An edit, or a refused edit, as its line; None for any other decision."""
    ref = f"`{format_id('D', decision.id)}`"
    when = f"{decision.created_at:%Y-%m-%d %H:%M:%S UTC}"
    if decision.kind == "edit":
        changed = quote(decision.reason, DETAIL_QUOTE_MAX)
        return f"  – {ref} :pencil2: edited by <@{decision.actor}> at {when}: {changed}"
    if decision.kind == "refusal" and decision.justification == EDIT_REFUSED:
        return f"  – {ref} edit by <@{decision.actor}> refused at {when}: {quote(decision.reason, DETAIL_QUOTE_MAX)}"
    return None


async def params_when_judged(uow: UnitOfWork, action: ProposedAction, decision: Decision) -> dict[str, Any]:
    """The parameters the action had when this decision was made."""
    return await ActionEdits(uow.session).params_when_judged(action.id or 0, decision.id or 0, action.params)
