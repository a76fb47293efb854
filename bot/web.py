"""The aiohttp server: `POST /slack/events` (events, commands, interactivity), `GET /healthz`, `GET /metrics`."""

from __future__ import annotations

import time

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncApp
from sqlalchemy import text

from bot.bootstrap import Aios
from bot.observability import ACK_SECONDS

MAX_BODY_BYTES = 1024 * 1024

AIOS_KEY = web.AppKey("aios", Aios)
BOLT_KEY = web.AppKey("bolt", AsyncApp)


async def slack_events(request: web.Request) -> web.Response:
    started = time.perf_counter()
    bolt_response = await request.app[BOLT_KEY].async_dispatch(await to_bolt_request(request))
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


def build_web_app(aios: Aios, bolt: AsyncApp) -> web.Application:
    app = web.Application(client_max_size=MAX_BODY_BYTES)
    app[AIOS_KEY] = aios
    app[BOLT_KEY] = bolt
    app.router.add_post("/slack/events", slack_events)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
    return app
