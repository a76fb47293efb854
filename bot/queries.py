"""Read-only answers for `/aios status`, `/aios pending`, `/aios why` and `/aios replay`."""

from __future__ import annotations

import json
import re
from datetime import datetime
from typing import TYPE_CHECKING, Any

from bot.cost import UnknownPeriodError, cost_report, cost_text
from bot.explain import DETAIL_QUOTE_MAX, NotFoundError, explain, related_records
from bot.slash import HELP, SlashCommand
from bot.why_blocks import why_message
from runtime.mrkdwn import quote
from storage.ids import UnknownIdError, format_id, parse_id
from storage.records import ProposedAction, RunStatus
from storage.unit_of_work import UnitOfWorkFactory

if TYPE_CHECKING:
    from policies.engine import Policy

ANSWERS = {
    "pause": "Which agent? For example `/aios pause returns`.",
    "resume": "Which agent? For example `/aios resume returns`.",
    "remember": "What should I remember? For example `/aios remember Ana prefers email`.",
    "recall": "Recall what? For example `/aios recall Ana`.",
    "forget": "Forget what? Give a memory id (`/aios forget M-4`) or words that match it.",
}

REPLAY_USAGE = (
    "Which run, against which policy? `/aios replay R-17` compares with the candidate policy "
    "(AIOS_CANDIDATE_POLICY_FILE); `/aios replay R-17 3fa9c2` with a stored earlier version (a hash prefix)."
)
REPLAY_LISTED_MAX = 200  # actions of one run listed; the Block Kit builder shortens further to fit a message
_HASH_PREFIX = re.compile(r"^[0-9a-f]{4,64}$")


async def private_answer(
    units: UnitOfWorkFactory, command: SlashCommand, now: datetime, candidate_policy_file: str | None
) -> tuple[str, list[dict[str, Any]] | None]:
    """The text (and, for a replay or a why, Block Kit) of a read-only subcommand, for the asker's eyes only."""
    if command.name == "replay":
        return await replay(units, command.argument, candidate_policy_file)
    if command.name == "why":
        return await why_answer(units, command.argument)
    return await answer(units, command, now), None


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


async def replay(
    units: UnitOfWorkFactory, argument: str, candidate_policy_file: str | None
) -> tuple[str, list[dict[str, Any]] | None]:
    """`/aios replay R-17 [hash prefix]`: the run's decisions judged again under the candidate policy or a
    stored earlier version. Bad input gets one sentence; the replay itself, a Block Kit diff."""
    from bot.replay import Scope, build_report, slack_message
    from policies.errors import PolicyError
    from storage.ids import is_id_of, parse_key
    from storage.records import Run

    words = argument.split()
    if not words or len(words) > 2:
        return REPLAY_USAGE, None
    run_id = parse_key(words[0], "R")
    if run_id is None and not is_id_of(words[0], "R"):
        return f"{quote(words[0], 40)} is not a run id; run ids look like R-17. {REPLAY_USAGE}", None
    found = None
    if run_id is not None:  # else a key too big for any table: no run has it
        async with units() as uow:
            found = await uow.get(Run, run_id)
    if found is None or run_id is None:
        return f"There is no run {quote(words[0].upper(), 40)}.", None
    try:
        policy = await _replay_policy(units, words[1] if len(words) == 2 else None, candidate_policy_file)
    except PolicyError as exc:
        message = quote(str(exc), DETAIL_QUOTE_MAX)
        return f"{message[:1].upper()}{message[1:]}.", None
    report = await build_report(units, policy, Scope(run_id=run_id), keep=REPLAY_LISTED_MAX)
    return slack_message(report)


async def _replay_policy(
    units: UnitOfWorkFactory, version: str | None, candidate_policy_file: str | None
) -> Policy:
    """The policy to replay under: a stored version named by a hash prefix, or else the candidate file."""
    from policies.engine import Policy
    from policies.errors import PolicyError

    if version is None:
        if not candidate_policy_file:
            raise PolicyError(
                "no candidate policy: set AIOS_CANDIDATE_POLICY_FILE to a policy file, or name a stored "
                "version by the start of its hash (`/aios replay R-17 3fa9c2`)"
            )
        from connectors.registry import installed_action_params

        # Checked as the bot checks its own policy: conditions may name only parameters the actions have.
        return Policy.from_file(candidate_policy_file, installed_action_params())
    prefix = version.lower()
    if not _HASH_PREFIX.match(prefix):
        raise PolicyError(f"{version!r} is not a policy hash prefix; give at least 4 hex digits, e.g. 3fa9c2")
    async with units() as uow:
        versions = await uow.replay.policy_versions(prefix)
    if not versions:
        raise PolicyError(f"no stored policy version has a hash starting with {prefix}")
    if len(versions) > 1:
        listed = ", ".join(v.hash[:12] for v in versions)
        raise PolicyError(
            f"{prefix} matches more than one stored policy version ({listed}); give more digits"
        )
    return Policy.from_text(versions[0].text, f"stored policy {versions[0].hash[:12]}")


async def why(units: UnitOfWorkFactory, record_id: str) -> str:
    if not record_id:
        return "Which record? Use `/aios why D-42` with an id from the thread (R-…, A-…, D-…, AP-…, E-…)."
    try:
        return await explain(units, record_id)
    except (UnknownIdError, NotFoundError) as exc:
        message = quote(str(exc), DETAIL_QUOTE_MAX)  # it quotes the argument as typed
        return f"{message[:1].upper()}{message[1:]}."


async def why_answer(units: UnitOfWorkFactory, record_id: str) -> tuple[str, list[dict[str, Any]] | None]:
    """`/aios why` in Slack: the same text in Block Kit, with buttons to the run, approval and execution it is
    about; a question or a refusal stays plain text."""
    text = await why(units, record_id)
    try:
        prefix, key = parse_id(record_id)
    except UnknownIdError:
        return text, None
    related = await related_records(units, prefix, key)
    if related.run is None:  # no such record: the text says so
        return text, None
    return why_message(format_id(prefix, key), text, related)


OPEN_STATES = (
    RunStatus.PLANNING,
    RunStatus.AWAITING_APPROVAL,
    RunStatus.EXECUTING,
    RunStatus.PAUSED,
    RunStatus.OVER_BUDGET,
    RunStatus.ESCALATED,  # waits for a person's answer in its thread, or for someone to take it over
)


async def status(units: UnitOfWorkFactory) -> str:
    async with units() as uow:
        counts = await uow.runs.run_counts_by_status()
        waiting = len(await uow.approvals.pending_approvals())
        open_runs = await uow.runs.runs_by_status(OPEN_STATES, limit=15)
        paused = await uow.runs.paused_agents()
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
        approvals = await uow.approvals.pending_approvals()
        lines = []
        for approval in approvals:
            action = await uow.get(ProposedAction, approval.action_id)
            assert action is not None
            age_minutes = int((now - approval.created_at).total_seconds() // 60)
            lines.append(
                f"• `{format_id('AP', approval.id)}` {action.name} "
                f"{quote(json.dumps(action.params, sort_keys=True), DETAIL_QUOTE_MAX)} — asked by "
                f"<@{approval.requester}> {age_minutes} min ago, needs {' or '.join(approval.approver_roles)}"
            )
    return "\n".join(["*Approvals waiting*", *lines]) if lines else "No approvals are waiting."
