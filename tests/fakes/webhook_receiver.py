"""A webhook receiver on 127.0.0.1 that checks AIOS's signature the way a receiver would, and keeps deliveries.

``POST /hooks/<anything>``: the HMAC-SHA256 of ``v0:<X-AIOS-Request-Timestamp>:<raw body>`` with the shared
secret must match ``X-AIOS-Signature`` (``v0=<hex>``) and the timestamp must be within five minutes, or the
answer is 401. The test can script the next answers (a 429 with Retry-After, a 503, a 400 with a message) or a
delay before answering.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
import time
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.fakes.loopback import LoopbackServer

SECRET = "whsec-shared-with-the-receiver-7f3a"
MAX_AGE_SECONDS = 300


@dataclass(frozen=True)
class Delivery:
    path: str
    headers: dict[str, str]
    body: dict[str, Any]


@dataclass(frozen=True)
class Scripted:
    status: int
    text: str = ""
    headers: dict[str, str] | None = None
    delay: float = 0.0


class WebhookReceiver(LoopbackServer):
    def __init__(self, secret: str = SECRET) -> None:
        super().__init__("webhook-receiver")
        self.secret = secret
        self.deliveries: list[Delivery] = []
        self.refused: list[str] = []  # why each refused request was refused
        self._script: list[Scripted] = []
        self._guard = threading.Lock()

    def url(self, path: str = "/hooks/crm") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer_next(self, answer: Scripted) -> None:
        with self._guard:
            self._script.append(answer)

    def delivered(self) -> list[Delivery]:
        with self._guard:
            return list(self.deliveries)

    def routes(self, app: web.Application) -> None:
        app.router.add_post("/hooks/{name}", self._receive)

    async def _receive(self, request: web.Request) -> web.Response:
        raw = await request.read()
        with self._guard:
            scripted = self._script.pop(0) if self._script else None
        if scripted is not None:
            await asyncio.sleep(scripted.delay)
            if scripted.status != 200:
                return web.Response(status=scripted.status, text=scripted.text, headers=scripted.headers)
        problem = self._check(request, raw)
        if problem is not None:
            with self._guard:
                self.refused.append(problem)
            return web.json_response({"error": problem}, status=401)
        with self._guard:
            self.deliveries.append(Delivery(request.path, dict(request.headers), json.loads(raw)))
        return web.json_response({"received": True})

    def _check(self, request: web.Request, raw: bytes) -> str | None:
        timestamp = request.headers.get("X-AIOS-Request-Timestamp", "")
        if not timestamp.isdigit() or abs(time.time() - int(timestamp)) > MAX_AGE_SECONDS:
            return "stale or missing timestamp"
        expected = hmac.new(
            self.secret.encode(), f"v0:{timestamp}:".encode() + raw, hashlib.sha256
        ).hexdigest()
        if not hmac.compare_digest(request.headers.get("X-AIOS-Signature", ""), f"v0={expected}"):
            return "invalid signature"
        return None
