"""Claude through the anthropic SDK: tool use, prompt caching, and retries that honour ``retry-after``.

This module owns retries (the SDK's own are off), so each attempt is visible and bounded in one place.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import anthropic
import stamina
import structlog

from agents.llm import (
    MAX_OUTPUT_TOKENS,
    CallContext,
    LLMError,
    LLMReply,
    Message,
    Role,
    ToolCall,
    ToolResult,
    ToolSpec,
    Usage,
)

log = structlog.get_logger(__name__)

ATTEMPTS = 4
MAX_WAIT_SECONDS = 30.0


def _retry_after(exc: Exception) -> bool | float:
    """stamina backoff hook: retry transient failures, waiting as long as the server asked when it did."""
    if isinstance(exc, anthropic.APIConnectionError):  # includes timeouts
        return True
    if not isinstance(exc, anthropic.RateLimitError | anthropic.InternalServerError):
        return False
    headers = exc.response.headers
    for name, scale in (("retry-after-ms", 0.001), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is not None:
            try:
                return min(max(float(value) * scale, 0.0), MAX_WAIT_SECONDS)
            except ValueError:
                pass
    return True


def _kind(exc: Exception) -> str:
    if isinstance(exc, anthropic.OverloadedError):
        return "overloaded"
    if isinstance(exc, anthropic.RateLimitError):
        return "rate_limited"
    if isinstance(exc, anthropic.InternalServerError):
        return "server_error"
    if isinstance(exc, anthropic.APIConnectionError):
        return "connection"
    if isinstance(exc, anthropic.AuthenticationError | anthropic.PermissionDeniedError):
        return "auth"
    return "bad_request"


class ClaudeLLM:
    name = "claude"

    def __init__(self, client: anthropic.AsyncAnthropic, *, dispatch_model: str, agent_model: str) -> None:
        self._client = client
        self._models: dict[Role, str] = {"dispatch": dispatch_model, "agent": agent_model}

    @classmethod
    def from_settings(
        cls, api_key: str, base_url: str | None, *, dispatch_model: str, agent_model: str
    ) -> ClaudeLLM:
        client = anthropic.AsyncAnthropic(api_key=api_key, base_url=base_url, max_retries=0, timeout=60.0)
        return cls(client, dispatch_model=dispatch_model, agent_model=agent_model)

    def model_for(self, role: Role) -> str:
        return self._models[role]

    async def close(self) -> None:
        await self._client.close()

    async def complete(
        self,
        *,
        role: Role,
        system: str,
        messages: Sequence[Message],
        tools: Sequence[ToolSpec],
        call: CallContext,
    ) -> LLMReply:
        model = self._models[role]
        request = _request(model, system, messages, tools)
        try:
            async for attempt in stamina.retry_context(
                on=_retry_after,
                attempts=ATTEMPTS,
                wait_max=dt.timedelta(seconds=MAX_WAIT_SECONDS),
                timeout=None,
            ):
                with attempt:
                    if attempt.num > 1:
                        log.warning("llm_retry", model=model, attempt=attempt.num, intent=call.intent_id)
                    response = await self._client.messages.create(**request)
        except anthropic.APIError as exc:
            raise LLMError(_kind(exc), f"{model}: {exc}") from exc
        return _reply(response)


def _request(
    model: str, system: str, messages: Sequence[Message], tools: Sequence[ToolSpec]
) -> dict[str, Any]:
    """The Messages API request. The system prompt and the tools are stable per agent, so both are cached:
    cache_control on the system block and on the last tool marks the whole prefix."""
    api_tools: list[dict[str, Any]] = [
        {"name": t.name, "description": t.description, "input_schema": t.input_schema} for t in tools
    ]
    if api_tools:
        api_tools[-1]["cache_control"] = {"type": "ephemeral"}
    request: dict[str, Any] = {
        "model": model,
        "max_tokens": MAX_OUTPUT_TOKENS,
        "system": [{"type": "text", "text": system, "cache_control": {"type": "ephemeral"}}],
        "messages": [_message(m) for m in messages],
    }
    if api_tools:
        request["tools"] = api_tools
    return request


def _message(message: Message) -> dict[str, Any]:
    if isinstance(message.content, str):
        return {"role": message.role, "content": message.content}
    blocks: list[dict[str, Any]] = []
    for block in message.content:
        if isinstance(block, str):
            if block:
                blocks.append({"type": "text", "text": block})
        elif isinstance(block, ToolCall):
            blocks.append({"type": "tool_use", "id": block.id, "name": block.name, "input": block.input})
        elif isinstance(block, ToolResult):
            blocks.append(
                {
                    "type": "tool_result",
                    "tool_use_id": block.tool_call_id,
                    "content": block.content,
                    "is_error": block.is_error,
                }
            )
    return {"role": message.role, "content": blocks}


def _reply(response: Any) -> LLMReply:
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in response.content:
        if block.type == "text":
            texts.append(block.text)
        elif block.type == "tool_use":
            calls.append(ToolCall(id=block.id, name=block.name, input=dict(block.input)))
    usage = response.usage
    return LLMReply(
        text="\n".join(texts).strip(),
        tool_calls=calls,
        stop_reason=str(response.stop_reason),
        usage=Usage(
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cache_creation_input_tokens=usage.cache_creation_input_tokens or 0,
            cache_read_input_tokens=usage.cache_read_input_tokens or 0,
        ),
        model=str(response.model),
    )
