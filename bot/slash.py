"""The `/aios` command grammar: a subcommand word, or else an intent in words."""

from __future__ import annotations

from dataclasses import dataclass

from bot.messages import Command, Forget, PauseAgent, Recall, Remember, ResumeAgent, TakeOverRun
from storage.ids import parse_key

SUBCOMMANDS = (
    "why",
    "status",
    "cost",
    "pending",
    "pause",
    "resume",
    "replay",
    "undo",
    "take",
    "remember",
    "recall",
    "forget",
    "help",
)

HELP = """*AIOS* — ask in words, and I propose actions that the team's policy gates.
• `/aios <what you want>` — e.g. `/aios refund order 1001 $250 arrived broken`
• `/aios why <id>` — the whole story behind a run, action, decision or approval (R-…, A-…, D-…, AP-…)
• `/aios status` — runs by state · `/aios pending` — approvals waiting for someone
• `/aios cost [today|week|month]` — model spend by agent, run and requester
• `/aios pause <agent>` / `/aios resume <agent>` — hold an agent's new runs and executions, then let them go
• `/aios take <R-id>` — take over a run an agent escalated to people: it closes and the agent stops
• `/aios replay <run> [version]` — what the candidate policy (or a stored version) would have decided
• `/aios undo <A-id>` — ask to take an executed action back (its inverse, judged by the policy like any other)
• `/aios remember <text>` · `/aios recall <words>` · `/aios forget <M-id or words>` — the team's long-term memory
• `/aios help` — this message
You can also mention me in a thread (`@aios refund order 1002, $40`) or message me directly."""


@dataclass(frozen=True)
class SlashCommand:
    name: str  # one of SUBCOMMANDS, or "intent"
    argument: str


def bus_command(command: SlashCommand, *, team: str, user: str, channel: str) -> Command | None:
    """Subcommands that change state or reach memory go to the bus; the rest are answered directly."""
    argument = command.argument
    if not argument:
        return None
    if command.name in ("pause", "resume"):
        agent = argument.split()[0].lower()
        return (PauseAgent if command.name == "pause" else ResumeAgent)(agent, user, channel)
    if command.name == "take":
        run_id = parse_key(argument.split()[0], "R")
        return TakeOverRun(run_id, user, channel) if run_id is not None else None
    if command.name == "remember":
        return Remember(team, user, channel, argument)
    if command.name == "recall":
        return Recall(team, user, channel, argument)
    if command.name == "forget":
        return Forget(team, user, channel, argument)
    return None


def parse_slash(text: str) -> SlashCommand:
    stripped = text.strip()
    if not stripped:
        return SlashCommand("help", "")
    word, _, rest = stripped.partition(" ")
    if word.lower() == "take" and parse_key(rest.strip().partition(" ")[0], "R") is None:
        return SlashCommand("intent", stripped)  # "take a look at order 1003" asks in words
    if word.lower() in SUBCOMMANDS:
        return SlashCommand(word.lower(), rest.strip())
    return SlashCommand("intent", stripped)
