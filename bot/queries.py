"""Read-only answers for `/aios status`, `/aios pending` and `/aios why`."""

from __future__ import annotations

import json
from datetime import datetime

from bot.cost import UnknownPeriodError, cost_report, cost_text
from bot.explain import DETAIL_QUOTE_MAX, NotFoundError, explain
from bot.mrkdwn import quote
from bot.slash import HELP, SlashCommand
from storage.ids import UnknownIdError, format_id
from storage.records import ProposedAction, RunStatus
from storage.unit_of_work import UnitOfWorkFactory

ANSWERS = {
    "pause": "Which agent? For example `/aios pause returns`.",
    "resume": "Which agent? For example `/aios resume returns`.",
    "remember": "What should I remember? For example `/aios remember Ana prefers email`.",
    "recall": "Recall what? For example `/aios recall Ana`.",
    "forget": "Forget what? Give a memory id (`/aios forget M-4`) or words that match it.",
    "replay": "`/aios replay` is not available in this version; runs cannot be replayed yet.",
}


async def answer(units: UnitOfWorkFactory, command: SlashCommand, now: datetime) -> str:
    """The text for a read-only subcommand; never raises for bad input."""
    if command.name == "help":
        return HELP
    if command.name == "why":
        return await why(units, command.argument)
    if command.name == "status":
        return await status(units)
    if command.name == "pending":
        return await pending(units, now)
    if command.name == "cost":
        try:
            return cost_text(await cost_report(units, command.argument.strip().lower() or "today", now))
        except UnknownPeriodError as exc:
            return f"{quote(str(exc), DETAIL_QUOTE_MAX)}. For example: `/aios cost week`."
    return ANSWERS.get(command.name, HELP)


async def why(units: UnitOfWorkFactory, record_id: str) -> str:
    if not record_id:
        return "Which record? Use `/aios why D-42` with an id from the thread (R-…, A-…, D-…, AP-…, E-…)."
    try:
        return await explain(units, record_id)
    except (UnknownIdError, NotFoundError) as exc:
        message = quote(str(exc), DETAIL_QUOTE_MAX)  # it quotes the argument as typed
        return f"{message[:1].upper()}{message[1:]}."


OPEN_STATES = (
    RunStatus.PLANNING,
    RunStatus.AWAITING_APPROVAL,
    RunStatus.EXECUTING,
    RunStatus.PAUSED,
    RunStatus.OVER_BUDGET,
)


async def status(units: UnitOfWorkFactory) -> str:
    async with units() as uow:
        counts = await uow.repo.run_counts_by_status()
        waiting = len(await uow.repo.pending_approvals())
        open_runs = await uow.repo.runs_by_status(OPEN_STATES, limit=15)
        paused = await uow.repo.paused_agents()
    if not counts:
        return "No runs yet. Ask for something with `/aios <what you want>`."
    listed = ", ".join(f"{state}: {count}" for state, count in sorted(counts.items()))
    lines = [f"*Runs by state* — {listed}. Approvals waiting: {waiting}."]
    lines += [f"• `{format_id('R', run.id)}` {run.agent} — {run.status}" for run in open_runs]
    if paused:
        lines.append("Paused agents: " + ", ".join(f"{p.agent} (by <@{p.paused_by}>)" for p in paused))
    return "\n".join(lines)


async def pending(units: UnitOfWorkFactory, now: datetime) -> str:
    async with units() as uow:
        approvals = await uow.repo.pending_approvals()
        lines = []
        for approval in approvals:
            action = await uow.repo.get(ProposedAction, approval.action_id)
            assert action is not None
            age_minutes = int((now - approval.created_at).total_seconds() // 60)
            lines.append(
                f"• `{format_id('AP', approval.id)}` {action.name} "
                f"{quote(json.dumps(action.params, sort_keys=True), DETAIL_QUOTE_MAX)} — asked by "
                f"<@{approval.requester}> {age_minutes} min ago, needs {' or '.join(approval.approver_roles)}"
            )
    return "\n".join(["*Approvals waiting*", *lines]) if lines else "No approvals are waiting."
