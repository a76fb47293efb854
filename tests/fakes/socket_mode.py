"""A local server that speaks Slack's Socket Mode protocol, for the real `aios socket` to connect to.

The fake Web API's ``apps.connections.open`` hands out this server's single-use WebSocket URLs. On each
connection the server sends ``hello``, then envelopes (``events_api``, ``slash_commands``, ``interactive``),
and records the client's acks by ``envelope_id``. Like Slack it pings the client (a client that stops
answering is dropped), can ask the client to reconnect (``disconnect``), and sends an Events API envelope
left un-acked on a connection that went away again on the next one, with ``retry_attempt`` incremented;
slash commands and clicks are not retried (Slack shows the person an error instead).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.fakes.loopback import LoopbackServer, wait_until

APP_TOKEN = "xapp-1-A0AIOS-1-test-app-token"
APP_ID = "A0AIOS"
# Slack pings about every 10 s; a client that does not answer within half of that is dropped.
PING_SECONDS = 10.0


@dataclass
class Envelope:
    envelope_id: str
    type: str
    payload: dict[str, Any]
    accepts_response_payload: bool
    retry_attempt: int = 0
    retry_reason: str = ""
    connection: int | None = None  # the connection it was last sent on
    acks: list[dict[str, Any]] = field(default_factory=list)  # every ack message received for it

    @property
    def acked(self) -> bool:
        return bool(self.acks)

    @property
    def ack_payload(self) -> dict[str, Any] | None:
        """The payload the (first) ack carried: a slash command's answer, for instance."""
        return self.acks[0].get("payload") if self.acks else None

    def message(self) -> dict[str, Any]:
        return {
            "envelope_id": self.envelope_id,
            "type": self.type,
            "payload": self.payload,
            "accepts_response_payload": self.accepts_response_payload,
            "retry_attempt": self.retry_attempt,
            "retry_reason": self.retry_reason,
        }


class FakeSocketMode(LoopbackServer):
    def __init__(self, *, app_token: str = APP_TOKEN) -> None:
        super().__init__("fake-slack-socket-mode")
        self.app_token = app_token
        self.envelopes: dict[str, Envelope] = {}
        self.connections_opened = 0
        self.refused_tickets: list[str] = []
        # Slash commands and clicks whose connection went away before their ack: Slack would tell the person.
        self.timed_out: list[Envelope] = []
        # Anything the client sent that is not an ack of a known envelope.
        self.unexpected: list[str] = []
        self._tickets: set[str] = set()
        self._sockets: dict[int, web.WebSocketResponse] = {}
        self._dropping: set[int] = set()  # connections being closed: what arrives on them is lost
        self._waiting: list[Envelope] = []  # to send once a connection is open
        self._numbers = itertools.count(1)

    def routes(self, app: web.Application) -> None:
        app.router.add_get("/link/", self._link)

    def issue_url(self) -> str:
        """A new single-use WebSocket URL, as ``apps.connections.open`` answers (called from its thread)."""
        ticket = uuid.uuid4().hex
        with self._lock:
            self._tickets.add(ticket)
        return f"ws://127.0.0.1:{self.port}/link/?ticket={ticket}"

    # --- what tests do --------------------------------------------------------------------------

    def send(self, type_: str, payload: dict[str, Any], *, accepts_response_payload: bool = False) -> str:
        """Deliver an envelope on the newest connection (or on the next one); returns its envelope_id."""
        envelope = Envelope(uuid.uuid4().hex, type_, payload, accepts_response_payload)
        with self._lock:
            self.envelopes[envelope.envelope_id] = envelope
        self._call(self._deliver(envelope))
        return envelope.envelope_id

    def send_event(self, body: dict[str, Any]) -> str:
        return self.send("events_api", body)

    def send_slash_command(self, fields: dict[str, str]) -> str:
        return self.send("slash_commands", fields, accepts_response_payload=True)

    def send_interactive(self, payload: dict[str, Any]) -> str:
        return self.send(
            "interactive", payload, accepts_response_payload=payload.get("type") != "block_actions"
        )

    def send_and_drop(self, type_: str, payload: dict[str, Any]) -> str:
        """Deliver an envelope and lose the connection before its ack can arrive."""
        envelope = Envelope(uuid.uuid4().hex, type_, payload, accepts_response_payload=False)
        with self._lock:
            self.envelopes[envelope.envelope_id] = envelope
        self._call(self._deliver_and_drop(envelope))
        return envelope.envelope_id

    def request_reconnect(self, reason: str = "refresh_requested") -> None:
        """Ask the client to move to a new connection, as Slack does every few hours."""
        self._call(self._send_newest({"type": "disconnect", "reason": reason, "debug_info": _DEBUG_INFO}))

    def wait_for_ack(self, envelope_id: str, timeout: float = 15.0) -> Envelope:
        envelope = self.envelopes[envelope_id]
        self.wait_for(lambda _: envelope.acked, timeout)
        return envelope

    def wait_for_connections(self, count: int, timeout: float = 30.0) -> None:
        self.wait_for(lambda s: s.connections_opened >= count and s.open_connections() > 0, timeout)

    def open_connections(self) -> int:
        with self._lock:
            return len(self._sockets)

    def unacked(self) -> list[Envelope]:
        with self._lock:
            return [e for e in self.envelopes.values() if not e.acked]

    def wait_for(self, predicate: Callable[[FakeSocketMode], Any], timeout: float = 15.0) -> Any:
        return wait_until(
            lambda: predicate(self),
            timeout,
            lambda: (
                f"the fake Socket Mode server did not see what was expected within {timeout}s: "
                f"{self.connections_opened} connections, envelopes {list(self.envelopes.values())}"
            ),
        )

    # --- the server -----------------------------------------------------------------------------

    def _call(self, work: Any) -> None:
        asyncio.run_coroutine_threadsafe(work, self._loop).result(10)

    async def _link(self, request: web.Request) -> web.StreamResponse:
        ticket = request.query.get("ticket", "")
        with self._lock:
            known = ticket in self._tickets
            self._tickets.discard(ticket)
        if not known:
            self.refused_tickets.append(ticket)
            return web.Response(status=401, text="invalid or used ticket: call apps.connections.open again")
        socket = web.WebSocketResponse(heartbeat=PING_SECONDS)
        await socket.prepare(request)
        number = next(self._numbers)
        with self._lock:
            self._sockets[number] = socket
            self.connections_opened += 1
            waiting, self._waiting = self._waiting, []
        await socket.send_json(
            {
                "type": "hello",
                "num_connections": len(self._sockets),
                "debug_info": {**_DEBUG_INFO, "approximate_connection_time": 18060},
                "connection_info": {"app_id": APP_ID},
            }
        )
        for envelope in waiting:
            await self._send_on(number, envelope)
        try:
            async for message in socket:
                if message.type == WSMsgType.TEXT:
                    self._receive(number, message.data)
        finally:
            await self._lost(number)
        return socket

    def _receive(self, number: int, data: str) -> None:
        try:
            message = json.loads(data)
            envelope_id = message["envelope_id"]
        except (ValueError, KeyError, TypeError):
            self.unexpected.append(data)
            return
        with self._lock:
            if number in self._dropping:
                return  # the connection is gone as far as Slack is concerned
            envelope = self.envelopes.get(envelope_id)
            if envelope is None:
                self.unexpected.append(data)
            else:
                envelope.acks.append(message)

    async def _lost(self, number: int) -> None:
        """A connection closed: Events API envelopes it left un-acked go out again, on the next one."""
        with self._lock:
            self._sockets.pop(number, None)
            self._dropping.discard(number)
            unacked = [e for e in self.envelopes.values() if e.connection == number and not e.acked]
        for envelope in unacked:
            if envelope.type != "events_api":
                self.timed_out.append(envelope)
                continue
            envelope.retry_attempt += 1
            envelope.retry_reason = "timeout"
            await self._deliver(envelope)

    async def _deliver(self, envelope: Envelope) -> None:
        with self._lock:
            newest = max(self._sockets, default=None)
            if newest is None:
                self._waiting.append(envelope)
                return
        await self._send_on(newest, envelope)

    async def _deliver_and_drop(self, envelope: Envelope) -> None:
        with self._lock:
            newest = max(self._sockets)
            socket = self._sockets[newest]
            self._dropping.add(newest)
        await self._send_on(newest, envelope)
        await socket.close()

    async def _send_on(self, number: int, envelope: Envelope) -> None:
        envelope.connection = number
        await self._sockets[number].send_json(envelope.message())

    async def _send_newest(self, message: dict[str, Any]) -> None:
        await self._sockets[max(self._sockets)].send_json(message)


_DEBUG_INFO = {"host": "applink-fake-1", "build_number": 1}
