"""The aiohttp server: `POST /slack/events` (events, commands, interactivity), `GET /healthz`, `GET /metrics`."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import unquote

import structlog
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import ValidationError
from slack_bolt.adapter.aiohttp import to_aiohttp_response
from slack_bolt.async_app import AsyncApp
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.request.payload_utils import (
    to_action,
    to_command,
    to_event,
    to_message,
    to_options,
    to_shortcut,
    to_step,
    to_view,
)

from bot.bootstrap import Aios
from bot.slack_metrics import ACK_SECONDS
from bot.slack_payloads import Envelope, delivery_id, payload_type, problems
from bot.slack_signature import SlackSignature
from runtime.observability import refresh_waiting_approvals
from runtime.tracing import slack_ack
from storage.engine import store_reader

MAX_BODY_BYTES = 1024 * 1024

AIOS_KEY = web.AppKey("aios", Aios)
BOLT_KEY = web.AppKey("bolt", AsyncApp)
SIGNATURE_KEY = web.AppKey("slack_signature", SlackSignature)

log = structlog.get_logger(__name__)


class MalformedRequestError(ValueError):
    """A signed body that is not a Slack payload; the message says what is wrong with it."""

    def __init__(self, reason: str, event_id: str | None = None) -> None:
        super().__init__(reason)
        self.event_id = event_id


async def slack_events(request: web.Request) -> web.Response:
    started = time.perf_counter()
    raw = await request.read()
    problem = request.app[SIGNATURE_KEY].problem(
        raw,
        request.headers.get("X-Slack-Request-Timestamp"),
        request.headers.get("X-Slack-Signature"),
        now=time.time(),
    )
    if problem is not None:
        log.warning("slack_request_refused", status=401, reason=problem)
        return web.json_response({"error": f"invalid signature: {problem}"}, status=401)
    try:
        bolt_request = _bolt_request(raw, request)
    except MalformedRequestError as exc:
        log.warning("slack_request_refused", status=400, reason=str(exc), event_id=exc.event_id)
        return web.json_response({"error": f"malformed payload: {exc}"}, status=400)
    with slack_ack(payload_type(bolt_request.body) or "unknown"):
        bolt_response = await request.app[BOLT_KEY].async_dispatch(bolt_request)
        response = await to_aiohttp_response(bolt_response)
    ACK_SECONDS.observe(time.perf_counter() - started)
    return response


def _bolt_request(raw: bytes, request: web.Request) -> AsyncBoltRequest:
    """The signed body as Bolt's request, once it is known to be a Slack payload Bolt can route.

    Bolt parses bodies and reads the team, user and channel ids from them without checking their types, so
    `[]`, `payload=null` or `"team": 5` would make it raise; they are refused here instead."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise MalformedRequestError("the body is not UTF-8 text") from None
    try:
        body = _parse_body(text, request.headers.get("Content-Type", "").partition(";")[0])
    except (ValueError, RecursionError):
        raise MalformedRequestError("the body is not valid JSON or form data") from None
    if not isinstance(body, dict):
        raise MalformedRequestError("the body (or its payload field) must be a JSON object")
    try:
        Envelope.model_validate(body)
    except ValidationError as exc:
        raise MalformedRequestError(problems(exc), delivery_id(body)) from None
    try:
        # Built around the body as read above rather than letting Bolt parse it a second time; besides, Bolt
        # takes any form body containing the word "payload" for an interactivity payload, so
        # `/aios remember payload sizes …` would reach no listener. Bolt takes a parsed body only in Socket
        # Mode: the request is made so, then said to be the HTTP request it is, with its raw body.
        bolt_request = AsyncBoltRequest(
            body=body, query=request.query_string, headers=dict(request.headers), mode="socket_mode"
        )
        bolt_request.mode = "http"
        bolt_request.raw_body = text
        # What Bolt hands every listener and error handler; reading it here turns a shape Bolt cannot read
        # into a 400 rather than a crash inside Bolt (the envelope check covers what Slack documents).
        for read in (to_event, to_message, to_command, to_action, to_options, to_shortcut, to_view, to_step):
            read(bolt_request.body)
        return bolt_request
    except (AttributeError, TypeError, KeyError, IndexError) as exc:
        raise MalformedRequestError(
            f"a field has an unexpected type ({type(exc).__name__}: {exc})", delivery_id(body)
        ) from None


def _parse_body(text: str, content_type: str) -> Any:
    """A JSON body, or a form body (its `payload` field when it has one, as interactivity bodies do)."""
    if content_type == "application/json" or text.startswith("{"):
        return json.loads(text)
    form = parse_form(text)
    return json.loads(form["payload"]) if "payload" in form else form


def parse_form(text: str) -> dict[str, str]:
    """The fields of a form body, as `dict(parse_qsl(text, keep_blank_values=True))` reads them (a later field
    of the same name wins; a field without `=` is blank), at a fraction of its cost: parse_qsl spends more on
    each field's calls than on decoding, and a slash command is a dozen fields, most with nothing to decode."""
    form: dict[str, str] = {}
    for field in text.split("&"):
        if field:
            name, _, value = field.partition("=")
            form[_unquote_plus(name)] = _unquote_plus(value)
    return form


def _unquote_plus(text: str) -> str:
    if "+" in text:
        text = text.replace("+", " ")
    return unquote(text) if "%" in text else text


class SharedCheck:
    """A health check that callers arriving while it runs share: each check opens a connection of its own (on
    SQLite a thread too), and the endpoint answers anyone who can reach it."""

    def __init__(self, check: Callable[[], Awaitable[object]]) -> None:
        self._check = check
        self._running: asyncio.Future[object] | None = None

    async def __call__(self) -> None:
        if self._running is None or self._running.done():
            self._running = asyncio.ensure_future(self._check())
            # Its outcome is read even when every caller went away before it ended.
            self._running.add_done_callback(lambda done: done.cancelled() or done.exception())
        await asyncio.shield(self._running)


HEALTH_CHECK_KEY = web.AppKey("health_check", SharedCheck)


async def healthz(request: web.Request) -> web.Response:
    aios = request.app[AIOS_KEY]
    try:
        # A row of a real table, read from the store itself: a connection alone (or SELECT 1) reads no page, and
        # on SQLite a pooled connection answers from its cache for a file deleted or broken since.
        await request.app[HEALTH_CHECK_KEY]()
    except Exception as exc:
        return web.json_response({"ok": False, "database": f"unreachable: {type(exc).__name__}"}, status=503)
    return web.json_response({"ok": True, "database": "ok", "planner": aios.llm.name})


async def metrics(request: web.Request) -> web.Response:
    aios = request.app[AIOS_KEY]
    try:
        await refresh_waiting_approvals(aios.units, aios.clock())
    except Exception as exc:
        # The other series are still worth serving; the gauges keep their last values.
        log.warning("metrics_approvals_unreadable", error=type(exc).__name__)
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_web_app(aios: Aios, bolt: AsyncApp, signing_secret: str) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[SIGNATURE_KEY] = SlackSignature(signing_secret)
    app[AIOS_KEY] = aios
    app[BOLT_KEY] = bolt
    app[HEALTH_CHECK_KEY] = SharedCheck(store_reader(aios.engine))
    app.router.add_post("/slack/events", slack_events)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app
