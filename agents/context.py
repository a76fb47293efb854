"""Short-term context: the thread's earlier messages, newest kept first, bounded by a token budget."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from agents.llm import Message

HISTORY_TOKEN_BUDGET = 2000
CHARS_PER_TOKEN = 4  # a deliberately rough estimate; the budget only has to bound the prompt, not fill it


@dataclass(frozen=True)
class ThreadEntry:
    ts: str
    user: str
    text: str
    from_bot: bool


def thread_messages(
    entries: Sequence[ThreadEntry], *, exclude_ts: str | None, budget_tokens: int = HISTORY_TOKEN_BUDGET
) -> list[Message]:
    """The thread as a conversation: people's messages as the user (quoted with who wrote them), the bot's as
    the assistant; the newest that fit in the budget, in order, starting with a user turn."""
    kept: list[Message] = []
    remaining = budget_tokens * CHARS_PER_TOKEN
    for entry in sorted(entries, key=lambda e: float(e.ts), reverse=True):
        if entry.ts == exclude_ts or not entry.text.strip():
            continue
        text = entry.text if entry.from_bot else f"<@{entry.user}> wrote: {entry.text}"
        if len(text) > remaining:
            break
        remaining -= len(text)
        kept.append(Message("assistant" if entry.from_bot else "user", text))
    kept.reverse()
    while kept and kept[0].role == "assistant":
        kept.pop(0)
    return kept
