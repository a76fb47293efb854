"""The `/aios` command grammar: a subcommand word, or else an intent in words."""

from __future__ import annotations

import re
from dataclasses import dataclass

from runtime.messages import (
    Command,
    Forget,
    PauseAgent,
    Recall,
    Remember,
    ResumeAgent,
    ShowVoice,
    TakeOverRun,
)
from runtime.mrkdwn import quote
from storage.ids import parse_key
from storage.memory.entities import normalised_key

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
    "voice",
    "calendar",
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
• `/aios remember [--kind K] [--key K] <text>` — something for the team to remember, e.g. \
`/aios remember --kind brand_voice Plain, warm, specific; no hype`; a text that names one order, customer or post \
is kept under its key (`order:1002`), and `/aios recall order 1002` finds it first
• `/aios recall <words>` · `/aios forget <M-id or words>` — what the team remembers, and forgetting it
• `/aios voice` — the brand-voice notes the content agent writes by; add one with \
`/aios remember --kind brand_voice <note>`
• `/aios plan December: two posts a week about winter care, Tuesdays and Fridays` — a month's content \
calendar, each slot a planned draft for an editor to approve
• `/aios calendar [month]` — per week, what is planned, drafted, scheduled and published (`december`, \
`2026-12`, `next month`)
• `/aios help` — this message
You can also mention me in a thread (`@aios refund order 1002, $40`) or message me directly."""


@dataclass(frozen=True)
class SlashCommand:
    name: str  # one of SUBCOMMANDS, or "intent"
    argument: str


def bus_command(command: SlashCommand, *, team: str, user: str, channel: str) -> Command | None:
    """Subcommands that change state or reach memory go to the bus; the rest are answered directly."""
    if command.name == "voice":
        return ShowVoice(team, user, channel)
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
        return remember_command(argument, team=team, user=user, channel=channel)
    if command.name == "recall":
        return Recall(team, user, channel, argument)
    if command.name == "forget":
        return Forget(team, user, channel, argument)
    return None


# A kind is one lowercase word: retention rules in the policy file name kinds, so they must be easy to write.
KIND = re.compile(r"[a-z][a-z0-9_]{0,29}")
REMEMBER_USAGE = (
    "`/aios remember [--kind K] [--key K] <text>`, e.g. `/aios remember --kind brand_voice Plain, warm, "
    "specific; no hype` or `/aios remember --key customer:ana@example.com Ana prefers email`"
)
# Slack turns "--" into a dash in some clients: "—kind" is meant as "--kind".
# An option is dashes and a letter: "— plain voice" (a dash Slack made of "--", then words) is the text itself.
_OPTION = re.compile(r"(?:--|—|–)([A-Za-z][\w-]*)(?:=(\S*)|\s+(\S+)|$)\s*")


def kind_problem(kind: str) -> str | None:
    """Why ``kind`` cannot be a memory's kind, or None when it can."""
    if KIND.fullmatch(kind):
        return None
    return (
        f"`{quote(kind, 40)}` is not a kind: a kind is one lowercase word (letters, digits "
        "and _, starting with a letter, at most 30 characters), e.g. `note`, `customer` or `brand_voice`"
    )


def key_problem(key: str) -> str | None:
    """Why ``key`` cannot be a memory's key, or None when it can."""
    if normalised_key(key) is not None:
        return None
    return (
        f"`{quote(key, 60)}` is not a key: a key is `namespace:value`, e.g. `order:1003`, "
        "`customer:ana@example.com` or `post:spring-lookbook`"
    )


def remember_command(argument: str, *, team: str, user: str, channel: str) -> Remember:
    """`/aios remember [--kind K] [--key K] <text>`: the options come first, each at most once; what is wrong
    with them travels in the command, to be said to the person instead of remembering anything."""
    options: dict[str, str] = {}
    rest = argument.strip()
    problem: str | None = None
    while problem is None and (match := _OPTION.match(rest)):
        name, value = match.group(1).lower(), match.group(2) or match.group(3) or ""
        rest = rest[match.end() :]
        if name not in ("kind", "key"):
            problem = f"I don't know the option `--{quote(name, 30)}`. Use {REMEMBER_USAGE}"
        elif name in options:
            problem = f"`--{name}` is given twice. Use {REMEMBER_USAGE}"
        elif not value:
            problem = f"`--{name}` needs a value. Use {REMEMBER_USAGE}"
        else:
            options[name] = value
    kind, key = options.get("kind", "note"), options.get("key")
    if problem is None:
        problem = kind_problem(kind) or (key_problem(key) if key is not None else None)
    if problem is None and not rest:
        problem = f"There is nothing to remember. Use {REMEMBER_USAGE}"
    normalised = normalised_key(key) if key is not None else None
    return Remember(team, user, channel, rest, kind=kind, key=normalised, problem=problem)


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
