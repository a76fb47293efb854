"""The lines `/aios why` gives a run that was handed to people, or that answered such a run."""

from __future__ import annotations

from runtime.mrkdwn import quote
from storage.escalations import Escalations
from storage.ids import format_id
from storage.records import EscalationStatus
from storage.unit_of_work import UnitOfWork

ESCALATION_QUOTE_MAX = 500


async def escalation_lines(uow: UnitOfWork, run_id: int) -> list[str]:
    queries = Escalations(uow.session)
    lines: list[str] = []
    answered = await queries.answered_by_run(run_id)
    if answered is not None:
        lines.append(
            f"• *Answers* the escalation of `{format_id('R', answered.run_id)}`, which asked: "
            f"“{quote(answered.question, ESCALATION_QUOTE_MAX)}”"
        )
    escalation = await queries.of_run(run_id)
    if escalation is None:
        return lines
    # Here, not at the top: the planner's modules take seconds to load, and the Slack SDK's too, which
    # `aios why` of a run that never escalated need not pay.
    from agents.dispatcher import DISPATCHER
    from runtime.mrkdwn import mentions

    asked = mentions(escalation.asked, ", ") or "nobody (the policy names no default approvers)"
    by = (
        "the dispatcher (no agent fits)"
        if escalation.agent == DISPATCHER
        else f"the {escalation.agent} agent"
    )
    lines.append(
        f"• *Escalated* by {by} at {escalation.created_at:%Y-%m-%d %H:%M UTC} to {asked}: "
        f"“{quote(escalation.reason, ESCALATION_QUOTE_MAX)}” — asked "
        f"“{quote(escalation.question, ESCALATION_QUOTE_MAX)}”"
    )
    when = f"{escalation.resolved_at:%Y-%m-%d %H:%M UTC}" if escalation.resolved_at else ""
    if escalation.status == EscalationStatus.ANSWERED:
        carried = (
            f", planned as `{format_id('R', escalation.answer_run_id)}`" if escalation.answer_run_id else ""
        )
        lines.append(
            f"  – answered by <@{escalation.resolved_by}> at {when}: "
            f"“{quote(escalation.answer or '', ESCALATION_QUOTE_MAX)}”{carried}"
        )
    elif escalation.status == EscalationStatus.TAKEN_OVER:
        lines.append(f"  – taken over by <@{escalation.resolved_by}> at {when}; the agent stopped")
    else:
        lines.append("  – waiting for a person: an answer in the thread, or Take over")
    return lines
