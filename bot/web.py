"""The aiohttp server: `POST /slack/events` (events, commands, interactivity), `GET /healthz`, `GET /metrics`."""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import text

from bot.bootstrap import Aios
from bot.observability import ACK_SECONDS

MAX_BODY_BYTES = 1024 * 1024

AIOS_KEY = web.AppKey("aios", Aios)
BOLT_KEY = web.AppKey("bolt", AsyncApp)
VERIFIER_KEY = web.AppKey("verifier", SignatureVerifier)


async def slack_events(request: web.Request) -> web.Response:
    started = time.perf_counter()
    try:
        bolt_request = await to_bolt_request(request)
    except ValueError:
        # Bolt parses the body before it checks the signature; keep "who are you" ahead of "what is this".
        body = await request.text()
        if not request.app[VERIFIER_KEY].is_valid_request(body, dict(request.headers)):
            return web.json_response({"error": "invalid signature"}, status=401)
        return web.json_response(
            {"error": "malformed payload: the body is not valid JSON or form data"}, status=400
        )
    bolt_response = await request.app[BOLT_KEY].async_dispatch(bolt_request)
    response = await to_aiohttp_response(bolt_response)
    ACK_SECONDS.observe(time.perf_counter() - started)
    return response


async def healthz(request: web.Request) -> web.Response:
    aios = request.app[AIOS_KEY]
    try:
        async with aios.engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as exc:
        return web.json_response({"ok": False, "database": f"unreachable: {type(exc).__name__}"}, status=503)
    return web.json_response({"ok": True, "database": "ok", "planner": aios.llm.name})


async def metrics(_request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(), headers={"Content-Type": CONTENT_TYPE_LATEST})


def build_web_app(aios: Aios, bolt: AsyncApp, signing_secret: str) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[VERIFIER_KEY] = SignatureVerifier(signing_secret)
    app[AIOS_KEY] = aios
    app[BOLT_KEY] = bolt
    app.router.add_post("/slack/events", slack_events)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app
