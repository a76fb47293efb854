"""The `/aios` command grammar: a subcommand word, or else an intent in words."""

from __future__ import annotations

from dataclasses import dataclass

from bot.messages import PauseAgent, ResumeAgent

SUBCOMMANDS = ("why", "status", "cost", "pending", "pause", "resume", "replay", "help")

HELP = """*AIOS* — ask in words, and I propose actions that the team's policy gates.
• `/aios <what you want>` — e.g. `/aios refund order 1001 $250 arrived broken`
• `/aios why <id>` — the whole story behind a run, action, decision or approval (R-…, A-…, D-…, AP-…)
• `/aios status` — runs by state · `/aios pending` — approvals waiting for someone
• `/aios cost [today|week|month]` — model spend by agent, run and requester
• `/aios pause <agent>` / `/aios resume <agent>` — hold an agent's new runs and executions, then let them go
• `/aios help` — this message
You can also mention me in a thread (`@aios refund order 1002, $40`) or message me directly."""


@dataclass(frozen=True)
class SlashCommand:
    name: str  # one of SUBCOMMANDS, or "intent"
    argument: str


def control_command(command: SlashCommand, user: str, channel: str) -> PauseAgent | ResumeAgent | None:
    """`/aios pause <agent>` and `/aios resume <agent>` change state, so they go to the bus."""
    if command.name not in ("pause", "resume") or not command.argument:
        return None
    agent = command.argument.split()[0].lower()
    return (PauseAgent if command.name == "pause" else ResumeAgent)(agent, user, channel)


def parse_slash(text: str) -> SlashCommand:
    stripped = text.strip()
    if not stripped:
        return SlashCommand("help", "")
    word, _, rest = stripped.partition(" ")
    if word.lower() in SUBCOMMANDS:
        return SlashCommand(word.lower(), rest.strip())
    return SlashCommand("intent", stripped)
