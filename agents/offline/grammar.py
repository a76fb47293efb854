"""What one offline grammar is: a planner for one kind of request, and the examples it understands."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from agents.llm import LLMReply


class Plans(Protocol):
    def __call__(self, text: str, system: str, offered: set[str]) -> LLMReply | None:
        """The reply for ``text`` (tool calls only of ``offered`` tools), or None when it is not this kind."""
        ...


class Examples(Protocol):
    def __call__(self, offered: set[str]) -> list[str]:
        """Requests this grammar understands with these tools offered, as the help shows them."""
        ...


@dataclass(frozen=True)
class Grammar:
    plan: Plans
    examples: Examples
