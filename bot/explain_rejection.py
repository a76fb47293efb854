"""The line `/aios why` gives a rejection's reason, and the run that revised the action with it."""

from __future__ import annotations

from runtime.mrkdwn import quote
from storage.ids import format_id
from storage.records import Decision, Run
from storage.rejection_reasons import RejectionReasons
from storage.unit_of_work import UnitOfWork

REASON_QUOTE_MAX = 500


async def reason_lines(uow: UnitOfWork, decision: Decision) -> list[str]:
    """A reason given for a rejection (a ``feedback`` decision), and what became of it: “revised as R-5 / A-9”."""
    when = f"{decision.created_at:%Y-%m-%d %H:%M:%S UTC}"
    line = (
        f"  – `{format_id('D', decision.id)}` reason for the rejection from <@{decision.actor}> at {when}: "
        f"“{quote(decision.reason, REASON_QUOTE_MAX)}”"
    )
    approval = await uow.approvals.approval_for_action(decision.action_id)
    reason = await RejectionReasons(uow.session).of_approval(approval.id or 0) if approval else None
    if reason is None or reason.revision_run_id is None:
        if reason is not None and reason.outcome == "recorded":
            line += " — recorded; this kind of action is not planned again"
        return [line]
    run = await uow.get(Run, reason.revision_run_id)
    actions = await uow.runs.actions_for_run(reason.revision_run_id)
    revised = " / ".join(
        [format_id("R", reason.revision_run_id), *(format_id("A", action.id) for action in actions)]
    )
    answer = "" if actions or run is None else f" ({run.status}: nothing proposed)"
    return [f"{line} — revised as {revised}{answer}"]
