"""The anchor of the ack benchmark: a bare Bolt AsyncApp behind aiohttp, as Bolt's documentation serves one.

`process_before_response=True` (the ack is the response; work would go to a background task) and a `/aios`
listener that acks at once with a line of text, as the bot's acks carry its answer or receipt, with the same
signing secret as the bot, so both get the very same signed requests.

    .venv/bin/python -m bench.bare_bolt --port 3100 --slack-api-url http://127.0.0.1:…/api/
"""

from __future__ import annotations

import argparse
import logging

from aiohttp import web
from slack_bolt.adapter.aiohttp import to_aiohttp_response, to_bolt_request
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from tests.fakes.slack_api import TOKEN
from tests.fakes.slack_payloads import SIGNING_SECRET


def build_bare_app(slack_api_url: str) -> web.Application:
    # The bot's token against the same fake Web API, so that Bolt's authorisation (one auth.test, cached) is
    # the same for both.
    bolt = AsyncApp(
        client=AsyncWebClient(token=TOKEN, base_url=slack_api_url),
        signing_secret=SIGNING_SECRET,
        process_before_response=True,
    )

    @bolt.command("/aios")
    async def on_command(ack: AsyncAck) -> None:
        await ack(text="Got it.")

    async def events(request: web.Request) -> web.Response:
        bolt_request = await to_bolt_request(request)
        return await to_aiohttp_response(await bolt.async_dispatch(bolt_request))

    async def healthz(_request: web.Request) -> web.Response:
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/slack/events", events)
    app.router.add_get("/healthz", healthz)
    return app


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--slack-api-url", required=True)
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    web.run_app(
        build_bare_app(args.slack_api_url), host="127.0.0.1", port=args.port, print=None, access_log=None
    )
