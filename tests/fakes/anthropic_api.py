"""A local server that speaks the Anthropic Messages API (`POST /v1/messages`), reached via ANTHROPIC_BASE_URL.

Tests script its answers in order: replies (text and tool_use blocks, a stop_reason) or failures (429 with
retry-after, 529 overloaded, 500). Usage is computed the way the real API reports it: the cached prefix
(tools and system, when marked with cache_control) is written on first sight and read afterwards, and, as
on the real API, a prefix shorter than the minimum cacheable length (1024 tokens for Sonnet and Opus) is not
cached at all.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.loopback import LoopbackServer

API_KEY = "sk-ant-test"


@dataclass(frozen=True)
class ToolUse:
    name: str
    input: dict[str, Any]


@dataclass(frozen=True)
class Reply:
    text: str = ""
    tool_uses: tuple[ToolUse, ...] = ()
    stop_reason: str | None = None  # derived when None: tool_use if there are tool uses, else end_turn


@dataclass(frozen=True)
class Failure:
    status: int
    error_type: str
    headers: dict[str, str] = field(default_factory=dict)


Script = Reply | Failure
ERRORS = {429: "rate_limit_error", 500: "api_error", 529: "overloaded_error"}


def rate_limited(retry_after: str = "0") -> Failure:
    return Failure(429, "rate_limit_error", {"retry-after": retry_after})


def overloaded() -> Failure:
    return Failure(529, "overloaded_error")


def server_error() -> Failure:
    return Failure(500, "api_error")


def tokens(value: Any) -> int:
    return max(1, len(json.dumps(value, sort_keys=True)) // 4)


class FakeAnthropicApi(LoopbackServer):
    def __init__(self, min_cacheable_tokens: int = 1024) -> None:
        super().__init__("fake-anthropic")
        self.min_cacheable_tokens = min_cacheable_tokens
        self.requests: list[dict[str, Any]] = []
        self.responses: list[tuple[int, dict[str, Any]]] = []
        self._script: list[Script] = []
        self.default: Callable[[dict[str, Any]], Script] | None = None
        self._cached_prefixes: set[str] = set()
        self._ids = itertools.count(1)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def script(self, *steps: Script) -> None:
        with self._lock:
            self._script.extend(steps)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/v1/messages", self._messages)

    async def _messages(self, request: web.Request) -> web.Response:
        body = await request.json()
        with self._lock:
            self.requests.append(body)
            step = self._script.pop(0) if self._script else None
        keys = {
            request.headers.get("x-api-key"),
            request.headers.get("Authorization", "").removeprefix("Bearer "),
        }
        if API_KEY not in keys:
            return self._error(Failure(401, "authentication_error"))
        if step is None:
            step = self.default(body) if self.default else Reply("I have nothing to add.")
        if isinstance(step, Failure):
            return self._error(step)
        return self._reply(body, step)

    def _error(self, failure: Failure) -> web.Response:
        payload = {"type": "error", "error": {"type": failure.error_type, "message": failure.error_type}}
        with self._lock:
            self.responses.append((failure.status, payload))
        return web.json_response(payload, status=failure.status, headers=failure.headers)

    def _reply(self, body: dict[str, Any], step: Reply) -> web.Response:
        content: list[dict[str, Any]] = []
        if step.text:
            content.append({"type": "text", "text": step.text})
        for use in step.tool_uses:
            content.append(
                {
                    "type": "tool_use",
                    "id": f"toolu_{next(self._ids):04d}",
                    "name": use.name,
                    "input": use.input,
                }
            )
        payload = {
            "id": f"msg_{next(self._ids):06d}",
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": content,
            "stop_reason": step.stop_reason or ("tool_use" if step.tool_uses else "end_turn"),
            "stop_sequence": None,
            "usage": self._usage(body, content),
        }
        with self._lock:
            self.responses.append((200, payload))
        return web.json_response(payload)

    def _usage(self, body: dict[str, Any], content: list[dict[str, Any]]) -> dict[str, int]:
        system, tools = body.get("system", []), body.get("tools", [])
        cacheable = isinstance(system, list) and any("cache_control" in block for block in system)
        prefix = {"model": body["model"], "system": system, "tools": tools}
        rest = tokens(body["messages"])
        usage = {
            "input_tokens": rest,
            "output_tokens": tokens(content),
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
        }
        if not cacheable or tokens(prefix) < self.min_cacheable_tokens:
            usage["input_tokens"] += tokens(prefix)
            return usage
        key = hashlib.sha256(json.dumps(prefix, sort_keys=True).encode()).hexdigest()
        with self._lock:
            seen = key in self._cached_prefixes
            self._cached_prefixes.add(key)
        usage["cache_read_input_tokens" if seen else "cache_creation_input_tokens"] = tokens(prefix)
        return usage
