"""Any MCP server's tools as gated actions: the tool ``status`` of the server ``git`` is ``mcp.git.status``.

``AIOS_MCP_CONFIG`` names a JSON file in the usual ``mcpServers`` format. Each server is connected at start
(stdio: a command; or streamable HTTP: a url), its tools are listed, and each becomes an action whose
parameters are checked against the tool's own JSON Schema and whose annotations (read-only, destructive) the
policy sees. A tool's words are scrubbed of its server entry's secrets (env values, headers, url) before they
are stored or posted. MCP has no idempotency keys, so nothing can be looked up after a crash: a write whose
outcome was lost is settled as failed ("may have run") instead of being called again; a read-only one is
repeated.
"""

from __future__ import annotations

import asyncio
import copy
import json
import re
import sys
from collections.abc import Iterable, Mapping
from contextlib import AsyncExitStack
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Self
from urllib.parse import parse_qsl, urlsplit

import structlog
from jsonschema import SchemaError  # type: ignore[import-untyped]  # no stubs shipped
from jsonschema.validators import validator_for  # type: ignore[import-untyped]
from pydantic import ConfigDict, model_validator
from pydantic_core import PydanticCustomError

from connectors.actions import Action
from connectors.base import ConnectorContext
from connectors.errors import (
    ConnectorSettingError,
    OutcomeUnknownError,
    PermanentConnectorError,
    TransientConnectorError,
)
from connectors.redaction import Redactor, Secret
from storage.unit_of_work import awaiting_remote

# The MCP SDK takes half a second to import, which every CLI command would pay even with no server
# configured: it is imported where a session is opened or called.
if TYPE_CHECKING:
    from mcp.client.session import ClientSession
    from mcp_types import CallToolResult, Tool

log = structlog.get_logger(__name__)

SETTING = "AIOS_MCP_CONFIG"
MCP_PREFIX = "mcp."
# Parts of `mcp.<server>.<tool>`: no dots (they separate the parts), and what a model's tool name allows.
_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]*$")
# A model's tool name (`mcp_<server>_<tool>`) is at most 64 characters.
TOOL_NAME_MAX = 64
RESULT_MAX_CHARS = 4_000
CONNECT_TIMEOUT_SECONDS = 20.0
# Under the execution handler's own 30 s, so an unanswered write is settled here (as "may have run") rather
# than timed out there and retried.
CALL_TIMEOUT_SECONDS = 20.0
PING_TIMEOUT_SECONDS = 5.0


class McpConfigError(ConnectorSettingError):
    """AIOS_MCP_CONFIG names a file that is missing or malformed."""


@dataclass(frozen=True)
class ServerConfig:
    name: str
    command: str | None = None
    args: tuple[str, ...] = ()
    env: Mapping[str, str] | None = None
    url: str | None = None
    headers: Mapping[str, str] | None = None

    def redact(self, text: str) -> str:
        """``text`` without the url (nor its password or query values), an ``env`` value or a header's
        value, which may hold a token or a password, in any form the Redactor knows (URL-encoded, base64)."""
        return self._redactor.text(text)

    @cached_property
    def _redactor(self) -> Redactor:
        # Values too short to be a token (an ``env`` value such as ``1``) are left by the Redactor: replacing
        # them everywhere would garble every result.
        headers = (self.headers or {}).values()
        # A header's credentials also without their scheme: "Bearer <token>" → also "<token>".
        schemeless = (value.split(" ", 1)[1] for value in headers if " " in value.strip())
        url = urlsplit(self.url or "")
        in_url = (url.password, *(value for _, value in parse_qsl(url.query)))
        secrets = (self.url, *in_url, *(self.env or {}).values(), *headers, *schemeless)
        return Redactor(Secret(SETTING, value) for value in secrets if value)


def load_config(path: str) -> list[ServerConfig]:
    """The servers of an ``mcpServers`` file; a clear one-line error for anything malformed (never a value of
    ``env`` or a url, which may hold a secret)."""
    try:
        raw = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise McpConfigError(
            f"{SETTING}: there is no file {path}; point it at an mcpServers JSON file"
        ) from None
    except OSError as exc:
        raise McpConfigError(f"{SETTING}: cannot read {path}: {exc.strerror}") from None
    except json.JSONDecodeError as exc:
        raise McpConfigError(
            f"{SETTING}: {path} is not JSON (line {exc.lineno}, column {exc.colno}: {exc.msg})"
        ) from None
    servers = raw.get("mcpServers") if isinstance(raw, dict) else None
    if not isinstance(servers, dict):
        raise McpConfigError(
            f'{SETTING}: {path} has no "mcpServers" object; expected {{"mcpServers": {{"git": {{"command": …}}}}}}'
        )
    return [_server(path, name, entry) for name, entry in servers.items()]


def _server(path: str, name: str, entry: Any) -> ServerConfig:
    where = f"{SETTING}: server {name!r} in {path}"
    if not _PART.match(name) or len(f"mcp_{name}_") >= TOOL_NAME_MAX:
        raise McpConfigError(
            f"{where}: a server name is letters, digits, _ and - (no dots), starting with a letter or digit, "
            "so that its tools can be named mcp.<server>.<tool>"
        )
    if not isinstance(entry, dict):
        raise McpConfigError(f"{where} is not an object")
    command, url, args = entry.get("command"), entry.get("url"), entry.get("args", [])
    env, headers = entry.get("env"), entry.get("headers")
    if (command is None) == (url is None):
        raise McpConfigError(f'{where} needs either "command" (stdio) or "url" (streamable HTTP), not both')
    if command is not None and (not isinstance(command, str) or not command):
        raise McpConfigError(f'{where}: "command" must be a non-empty string')
    if url is not None and (not isinstance(url, str) or not url.startswith(("http://", "https://"))):
        raise McpConfigError(f'{where}: "url" must be an http:// or https:// address')
    if not isinstance(args, list) or not all(isinstance(a, str) for a in args):
        raise McpConfigError(f'{where}: "args" must be a list of strings')
    if env is not None and (
        not isinstance(env, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items())
    ):
        raise McpConfigError(f'{where}: "env" must be an object of strings')
    if headers is not None and (
        url is None
        or not isinstance(headers, dict)
        or not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items())
    ):
        raise McpConfigError(f'{where}: "headers" must be an object of strings, and only with "url"')
    return ServerConfig(name=name, command=command, args=tuple(args), env=env, url=url, headers=headers)


class McpToolAction(Action):
    """A call of one MCP tool; its parameters are the tool's arguments, checked against the tool's schema.

    Subclassed once per tool when its server is connected (see ``action_for_tool``)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    server: ClassVar[str]
    tool: ClassVar[str]
    input_schema: ClassVar[dict[str, Any]]
    read_only: ClassVar[bool]
    destructive: ClassVar[bool]

    @model_validator(mode="before")
    @classmethod
    def _matches_the_tools_schema(cls, data: Any) -> Any:
        validator = validator_for(cls.input_schema)(cls.input_schema)
        problems = sorted(validator.iter_errors(data), key=lambda e: [str(p) for p in e.absolute_path])
        if problems:
            text = "; ".join(
                f"{'.'.join(str(p) for p in e.absolute_path) or 'arguments'}: {e.message}"
                for e in problems[:5]
            )
            # The text goes in the context: a message template would read its braces as placeholders.
            raise PydanticCustomError("json_schema", "{problems}", {"problems": text})
        return data

    @classmethod
    def model_json_schema(cls, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """The tool's own schema, so the model is offered exactly what the server accepts."""
        return copy.deepcopy(cls.input_schema)

    @classmethod
    def facts(cls) -> dict[str, bool]:
        """What the policy's conditions see as ``action.read_only`` and ``action.destructive``."""
        return {"read_only": cls.read_only, "destructive": cls.destructive}

    def arguments(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def summary(self) -> str:
        text = json.dumps(self.arguments(), ensure_ascii=False, sort_keys=True)
        return f"{self.server}: {self.tool} {text if len(text) <= 200 else text[:199] + '…'}"


def action_for_tool(server: str, tool: Tool) -> type[McpToolAction] | str:
    """The action class for one tool, or why the tool cannot be one (its name or its schema)."""
    if not _PART.match(tool.name) or len(f"mcp_{server}_{tool.name}") > TOOL_NAME_MAX:
        return (
            f"its name is not letters, digits, _ and - or is too long for mcp.{server}.<tool> "
            f"(at most {TOOL_NAME_MAX} characters as mcp_{server}_<tool>)"
        )
    schema = dict(tool.input_schema)
    try:
        validator_for(schema).check_schema(schema)
    except SchemaError as exc:
        return f"its input schema is not valid JSON Schema ({exc.message})"
    hints = tool.annotations
    read_only = bool(hints and hints.read_only_hint)
    # The MCP default: a tool that is not read-only may be destructive unless it says otherwise.
    destructive = not read_only and (hints is None or hints.destructive_hint is not False)
    namespace = {
        "__module__": __name__,
        "name": f"{MCP_PREFIX}{server}.{tool.name}",
        "description": (tool.description or f"The {tool.name} tool of the MCP server {server}.").strip(),
        "server": server,
        "tool": tool.name,
        "input_schema": schema,
        "read_only": read_only,
        "destructive": destructive,
    }
    return type(f"Mcp_{server}_{tool.name}", (McpToolAction,), namespace)


def params_by_action(models: Iterable[type[Action]]) -> dict[str, list[str]]:
    """Each action → its parameter names: an MCP tool's from its schema's properties, the others' fields.
    What ``Policy.check_action_params`` checks the rules against once the servers are connected."""
    return {
        model.name: sorted(
            model.input_schema.get("properties") or {}
            if issubclass(model, McpToolAction)
            else model.model_fields
        )
        for model in models
    }


class _Session:
    """One server's live session. Its own task opens and closes the transport, because the SDK's task groups
    must be left in the task that entered them (a shutdown runs in another)."""

    def __init__(self, config: ServerConfig) -> None:
        self.config = config
        self.session: ClientSession | None = None
        self.tools: list[Tool] = []
        self._ready = asyncio.Event()
        self._stop = asyncio.Event()
        self._error: BaseException | None = None
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        self._task = asyncio.create_task(self._run(), name=f"mcp-{self.config.name}")
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT_SECONDS):
                await self._ready.wait()
        except TimeoutError:
            await self.close()
            raise TransientConnectorError(
                f"MCP server {self.config.name} did not answer within {CONNECT_TIMEOUT_SECONDS:.0f} s"
            ) from None
        if self.session is None:
            await self.close()
            raise TransientConnectorError(
                f"MCP server {self.config.name} cannot be reached: {self.config.redact(_describe(self._error))}"
            )

    async def _run(self) -> None:
        from mcp.client.session import ClientSession
        from mcp.client.stdio import StdioServerParameters, stdio_client
        from mcp.client.streamable_http import streamable_http_client
        from mcp.shared._httpx_utils import create_mcp_http_client

        try:
            async with AsyncExitStack() as stack:
                config = self.config
                if config.url is not None:
                    # The SDK's own client (its timeouts) with the configured headers, e.g. an Authorization.
                    client = create_mcp_http_client(headers=dict(config.headers or {}))
                    await stack.enter_async_context(client)
                    read, write = await stack.enter_async_context(
                        streamable_http_client(config.url, http_client=client)
                    )
                else:
                    assert config.command is not None
                    params = StdioServerParameters(
                        command=config.command, args=list(config.args), env=dict(config.env or {}) or None
                    )
                    # The process's own stderr for the server's: sys.stderr may have been replaced by an
                    # object with no file descriptor (a capture), which a child process cannot write to.
                    errlog = sys.__stderr__ or sys.stderr
                    read, write = await stack.enter_async_context(stdio_client(params, errlog=errlog))
                session = await stack.enter_async_context(ClientSession(read, write))
                await session.initialize()
                self.tools = await _all_tools(session)
                self.session = session
                self._ready.set()
                await self._stop.wait()
        except Exception as exc:  # any failure to connect is reported by open(), whatever raised it
            self._error = exc
        finally:
            self.session = None
            self._ready.set()

    async def close(self) -> None:
        self._stop.set()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)


async def _all_tools(session: ClientSession) -> list[Tool]:
    from mcp_types import PaginatedRequestParams

    tools: list[Tool] = []
    cursor: str | None = None
    while True:
        page = await session.list_tools(params=PaginatedRequestParams(cursor=cursor) if cursor else None)
        tools += page.tools
        cursor = page.next_cursor
        if not cursor:
            return tools


def _describe(exc: BaseException | None) -> str:
    """An exception in one line, without an exception group's wrapping."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    if exc is None:
        return "it stopped"
    return (str(exc) or type(exc).__name__).splitlines()[0][:300]


class McpTools:
    """The tools of the configured MCP servers. Its actions are known only once connected."""

    actions: ClassVar[tuple[type[Action], ...]] = ()  # see connect()
    settings_names: ClassVar[tuple[str, ...]] = (SETTING,)

    def __init__(self, servers: list[ServerConfig]) -> None:
        self._configs = {server.name: server for server in servers}
        self._sessions: dict[str, _Session] = {}
        self._actions: dict[str, type[McpToolAction]] = {}
        self.unreachable: dict[str, str] = {}  # server → why it could not be connected at start
        self._lock = asyncio.Lock()

    @classmethod
    def configured(cls, context: ConnectorContext) -> Self | None:
        path = context.settings.get(SETTING)
        return cls(load_config(path)) if path else None

    async def connect(self) -> tuple[type[Action], ...]:
        """Connect to every server at once and make each tool an action. A server that cannot be reached is
        logged and its tools are left out; the others still work."""
        await asyncio.gather(*(self._connect(name) for name in self._configs))
        return tuple(self._actions.values())

    async def _connect(self, name: str) -> None:
        session = _Session(self._configs[name])
        try:
            await session.open()
        except TransientConnectorError as exc:
            self.unreachable[name] = str(exc)
            log.error("mcp_server_unreachable", server=name, error=str(exc))
            return
        self._sessions[name] = session
        for tool in session.tools:
            made = action_for_tool(name, tool)
            if isinstance(made, str):
                log.warning("mcp_tool_left_out", server=name, tool=tool.name[:100], reason=made)
            else:
                self._actions[made.name] = made
        log.info("mcp_server_connected", server=name, tools=len(session.tools))

    async def execute(self, action: Action, idempotency_key: str) -> dict[str, Any]:
        from mcp.shared.exceptions import MCPError
        from mcp_types import CONNECTION_CLOSED, REQUEST_TIMEOUT

        assert isinstance(action, McpToolAction)
        config = self._configs[action.server]
        session = await self._live_session(action)
        try:
            async with asyncio.timeout(CALL_TIMEOUT_SECONDS), awaiting_remote():
                result = await session.call_tool(action.tool, action.arguments())
        except MCPError as exc:
            if exc.code not in (CONNECTION_CLOSED, REQUEST_TIMEOUT):
                raise PermanentConnectorError(
                    f"{action.name}: the server refused the call: {config.redact(exc.message)}"
                ) from None
            await self._drop(action.server)
            raise _broken(action, exc, config) from None
        except Exception as exc:
            await self._drop(action.server)
            raise _broken(action, exc, config) from None
        # A tool may echo what it was started with (a token in its environment, in a commit it shows, …):
        # its words are scrubbed of every secret of its entry before they are stored or posted.
        text = _cut(config.redact(_text(result)))
        if result.is_error:
            raise PermanentConnectorError(f"{action.name} failed: {text or 'the tool gave no reason'}")
        return {"server": action.server, "tool": action.tool, "text": text}

    async def lookup(self, action: Action, idempotency_key: str) -> dict[str, Any] | None:
        """MCP calls carry no key, so an earlier call cannot be found. A read-only one is simply made again
        (None); a write that may have run is not repeated blindly."""
        assert isinstance(action, McpToolAction)
        if action.read_only:
            return None
        raise OutcomeUnknownError(
            f"{action.name}: it was in flight when the bot stopped and MCP cannot tell whether it ran, so it "
            "is not called again"
        )

    async def _live_session(self, action: McpToolAction) -> ClientSession:
        """The server's session, reconnected once if the server has stopped since."""
        async with self._lock:
            current = self._sessions.get(action.server)
            if current is not None and current.session is not None:
                try:
                    async with asyncio.timeout(PING_TIMEOUT_SECONDS):
                        await current.session.send_ping()
                    return current.session
                except Exception:
                    log.warning("mcp_server_lost", server=action.server)
            await self._drop(action.server)
            session = _Session(self._configs[action.server])
            await session.open()  # raises TransientConnectorError when it cannot
            self._sessions[action.server] = session
            assert session.session is not None
            return session.session

    async def _drop(self, server: str) -> None:
        if (session := self._sessions.pop(server, None)) is not None:
            await session.close()

    async def health(self) -> str:
        """Each server reached, with how many of its tools are actions; raises naming the ones that cannot
        be reached (the others still listed)."""
        if not self._sessions and not self.unreachable:
            await self.connect()
        parts = []
        for name in sorted(self._configs):
            if name in self.unreachable:
                parts.append(self.unreachable[name])
            elif (session := self._sessions.get(name)) is not None:
                made = sum(action.server == name for action in self._actions.values())
                left_out = len(session.tools) - made
                parts.append(
                    f"{name}: {made} tools" + (f" ({left_out} left out, see the log)" if left_out else "")
                )
        if self.unreachable:
            raise PermanentConnectorError(
                "; ".join(parts) + f" (check the server's entry in the {SETTING} file)"
            )
        return "; ".join(parts)

    async def close(self) -> None:
        for server in list(self._sessions):
            await self._drop(server)


def _broken(
    action: McpToolAction, exc: BaseException, config: ServerConfig
) -> OutcomeUnknownError | TransientConnectorError:
    """A call whose connection broke: a read-only one is tried again; a write may have run, so it is not."""
    why = "timed out" if isinstance(exc, TimeoutError) else f"broke ({config.redact(_describe(exc))})"
    if action.read_only:
        return TransientConnectorError(f"{action.name}: the call to MCP server {action.server} {why}")
    return OutcomeUnknownError(
        f"{action.name}: the call to MCP server {action.server} {why} and MCP cannot tell whether it ran, so "
        "it is not called again"
    )


def _text(result: CallToolResult) -> str:
    from mcp_types import TextContent

    return "\n".join(part.text for part in result.content if isinstance(part, TextContent)).strip()


def _cut(text: str) -> str:
    """What a record and a Slack message can hold. Cut after scrubbing, so no secret is left half-cut."""
    return text if len(text) <= RESULT_MAX_CHARS else text[: RESULT_MAX_CHARS - 1] + "…"
