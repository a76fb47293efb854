"""The interface every planner speaks, shaped like the Messages API's tool use.

A system prompt, a conversation and tools go in; text, tool calls, the stop reason and token usage come out.
The offline planner and Claude are interchangeable behind it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

Role = Literal["dispatch", "agent"]  # which model: a cheap one routes, a stronger one plans
MAX_OUTPUT_TOKENS = 1024


@dataclass(frozen=True)
class ToolSpec:
    name: str
    description: str
    input_schema: dict[str, object]


@dataclass(frozen=True)
class ToolCall:
    id: str
    name: str
    input: dict[str, object]


@dataclass(frozen=True)
class ToolResult:
    tool_call_id: str
    content: str
    is_error: bool = False


Block = str | ToolCall | ToolResult  # a str is a text block


@dataclass(frozen=True)
class Message:
    role: Literal["user", "assistant"]
    content: str | tuple[Block, ...]

    @property
    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "\n".join(block for block in self.content if isinstance(block, str))


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0


@dataclass(frozen=True)
class LLMReply:
    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    stop_reason: str = "end_turn"
    usage: Usage = field(default_factory=Usage)
    model: str = ""


@dataclass(frozen=True)
class CallContext:
    """Who a model call is for, so its cost lands on the right agent, run, requester and channel."""

    intent_id: int
    agent: str
    requester: str
    channel: str
    team_id: str = ""
    run_id: int | None = None
    thread_ts: str | None = None


class LLMError(Exception):
    """The model could not answer; ``kind`` says why (rate_limited, overloaded, server_error, connection, …)."""

    TRANSIENT = frozenset({"rate_limited", "overloaded", "server_error", "connection"})

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind

    @property
    def transient(self) -> bool:
        """Worth trying again later; the others need someone to fix a key, a model name or a request."""
        return self.kind in self.TRANSIENT


class LLM(Protocol):
    @property
    def name(self) -> str: ...

    def model_for(self, role: Role) -> str: ...

    async def complete(
        self,
        *,
        role: Role,
        system: str,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        call: CallContext,
    ) -> LLMReply: ...

    async def close(self) -> None:
        """Release connections at shutdown."""
        ...


class LLMWrapper:
    """An LLM around another one (metering it, counting it): everything but ``complete`` is the inner one's."""

    def __init__(self, inner: LLM) -> None:
        self._inner = inner

    @property
    def name(self) -> str:
        return self._inner.name

    def model_for(self, role: Role) -> str:
        return self._inner.model_for(role)

    async def close(self) -> None:
        await self._inner.close()
