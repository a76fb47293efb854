"""Read-only answers for `/aios status`, `/aios pending`, `/aios why` and `/aios replay`."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import Integer, String, cast, func, literal, null, union_all
from sqlmodel import col, select

from bot.cost import UnknownPeriodError, cost_report, cost_text
from bot.explain import DETAIL_QUOTE_MAX, NotFoundError, explain, related_records
from bot.shared_answers import SharedAnswers
from bot.slash import HELP, SlashCommand
from bot.why_blocks import MESSAGE_TEXT_MAX, why_message
from runtime.mrkdwn import quote, truncate
from storage.ids import UnknownIdError, format_id, parse_id
from storage.records import AgentPause, Approval, ApprovalStatus, ProposedAction, Run, RunStatus
from storage.unit_of_work import UnitOfWorkFactory, commits_so_far

if TYPE_CHECKING:
    from policies.engine import Policy

ANSWERS = {
    "pause": "Which agent? For example `/aios pause returns`.",
    "resume": "Which agent? For example `/aios resume returns`.",
    "remember": "What should I remember? For example `/aios remember Ana prefers email`.",
    "recall": "Recall what? For example `/aios recall Ana`.",
    "forget": "Forget what? Give a memory id (`/aios forget M-4`) or words that match it.",
}

# Subcommands answered in the ack itself, which Slack shows to the asker alone (as it would an ephemeral message):
# plain text from at most a few statements, or none. Why and replay answer after the ack, in Block Kit.
ANSWERED_IN_THE_ACK = frozenset({"help", "status", "pending", "cost", *ANSWERS})

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
OPEN_RUNS_LISTED = 15


# `/aios status` in one statement (it answers in the ack): rows tagged by what they are, with the same columns.
_COUNT, _WAITING, _OPEN, _PAUSED = "count", "waiting", "open", "paused"
_NO_TEXT, _NO_NUMBER = cast(null(), String), cast(null(), Integer)
_open_runs = (
    select(col(Run.id), col(Run.status), col(Run.agent))
    .where(col(Run.status).in_(OPEN_STATES))
    .order_by(col(Run.id).desc())
    .limit(OPEN_RUNS_LISTED)
    .subquery()
)
_status_rows = union_all(
    select(literal(_COUNT), col(Run.status), func.count(), _NO_TEXT).group_by(col(Run.status)),
    select(literal(_WAITING), _NO_TEXT, func.count(), _NO_TEXT).where(
        col(Approval.status) == ApprovalStatus.PENDING
    ),
    select(literal(_OPEN), _open_runs.c.status, _open_runs.c.id, _open_runs.c.agent),
    select(literal(_PAUSED), col(AgentPause.agent), _NO_NUMBER, col(AgentPause.paused_by)),
).subquery()
STATUS_QUERY = select(*_status_rows.c)


async def status(units: UnitOfWorkFactory) -> str:
    """Runs by state, approvals waiting, the newest open runs and the paused agents, read in one statement of a
    read-only unit of work (no writer's turn is waited for)."""
    async with units.read() as uow:
        rows = (await uow.session.exec(STATUS_QUERY)).all()
    counts = {state: number for kind, state, number, _ in rows if kind == _COUNT}
    if not counts:
        return "No runs yet. Ask for something with `/aios <what you want>`."
    waiting = sum(number for kind, _, number, _ in rows if kind == _WAITING)
    open_runs = sorted(
        ((number, state, agent) for kind, state, number, agent in rows if kind == _OPEN), reverse=True
    )
    paused = sorted((agent, by) for kind, agent, _, by in rows if kind == _PAUSED)
    listed = ", ".join(f"{state}: {count}" for state, count in sorted(counts.items()))
    lines = [f"*Runs by state* — {listed}. Approvals waiting: {waiting}."]
    lines += [f"• `{format_id('R', run_id)}` {agent} — {state}" for run_id, state, agent in open_runs]
    if paused:
        lines.append("Paused agents: " + ", ".join(f"{agent} (by <@{by}>)" for agent, by in paused))
    return "\n".join(lines)


# The oldest waiting approvals listed: the answer is an ack, a message read at a glance.
PENDING_LISTED = 20
PENDING_QUERY = (
    select(col(Approval.id), col(ProposedAction.name), col(ProposedAction.params), col(Approval.requester))
    .add_columns(col(Approval.created_at), col(Approval.approver_roles), func.count().over())
    .join(ProposedAction, col(ProposedAction.id) == col(Approval.action_id))
    .where(col(Approval.status) == ApprovalStatus.PENDING)
    .order_by(col(Approval.id))
    .limit(PENDING_LISTED)
)


async def pending(units: UnitOfWorkFactory, now: datetime) -> str:
    """The oldest waiting approvals with their actions, and how many more wait, read in one statement (it
    answers in the ack)."""
    async with units.read() as uow:
        # sqlmodel types exec() for at most four columns; the rows are the seven selected.
        rows = (await uow.session.exec(PENDING_QUERY)).all()  # type: ignore[call-overload]
    if not rows:
        return "No approvals are waiting."
    lines = [
        f"• `{format_id('AP', approval_id)}` {name} "
        f"{quote(json.dumps(params, sort_keys=True), DETAIL_QUOTE_MAX)} — asked by "
        f"<@{requester}> {int((now - created_at).total_seconds() // 60)} min ago, needs {' or '.join(roles)}"
        for approval_id, name, params, requester, created_at, roles, _ in rows
    ]
    waiting = rows[0][-1]  # the window's count: every waiting approval, before the limit
    if waiting > len(rows):
        lines.append(f"…and {waiting - len(rows)} more, newer: they are listed here as these are decided.")
    return truncate("\n".join(["*Approvals waiting*", *lines]), MESSAGE_TEXT_MAX)


# How late an answer in an ack may show what another process (a worker, a replica) changed; what this process
# changed is shown at once.
QUICK_ANSWER_MAX_AGE_SECONDS = 1.0


def quick_answers(units: UnitOfWorkFactory, clock: Callable[[], datetime]) -> SharedAnswers[tuple[str, str]]:
    """The answers acks carry, by subcommand and argument: asks of the same one at the same time share a read,
    and an answer is given again for up to a second, until this process commits a change."""

    async def read(asked: tuple[str, str]) -> str:
        return await answer(units, SlashCommand(*asked), clock())

    return SharedAnswers(read, max_age=QUICK_ANSWER_MAX_AGE_SECONDS, version=commits_so_far)
