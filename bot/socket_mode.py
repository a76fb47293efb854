"""Socket Mode: the bot connects out to Slack over a WebSocket instead of receiving HTTP, so it needs no public
URL. The app-level token (xapp-…) authenticates the connection; the payloads themselves are not signed."""

from __future__ import annotations

import asyncio
import signal
from typing import Any

import aiohttp
import structlog
from slack_bolt.adapter.socket_mode.async_handler import AsyncSocketModeHandler
from slack_sdk.errors import SlackApiError, SlackClientError
from slack_sdk.socket_mode.async_client import AsyncBaseSocketModeClient
from slack_sdk.web.async_client import AsyncWebClient

from bot.bootstrap import bootstrap, close_or_exit
from bot.scheduler import build_scheduler
from bot.settings import Settings
from bot.slack_app import build_slack_app
from bot.slack_transport import SlackTransport, build_slack_client

log = structlog.get_logger(__name__)

# Bolt checks a signing secret that Socket Mode never uses: the connection is what Slack authenticates.
_UNUSED_SIGNING_SECRET = "unused-in-socket-mode"


class SocketModeStartError(RuntimeError):
    """Socket Mode cannot start (the app token is refused, or Slack cannot be reached); the message says
    what to fix."""


async def _log_hello(_client: AsyncBaseSocketModeClient, message: dict[str, Any], _raw: str | None) -> None:
    # Slack says hello on every new connection: at start, and after each refresh or lost connection.
    if message.get("type") == "hello":
        log.info("socket_mode_session_opened", connections=message.get("num_connections"))


async def run_socket_mode(settings: Settings) -> None:
    """Connect, carry on what a stopped process left, serve until SIGTERM or SIGINT, then stop cleanly."""
    settings.require("SLACK_BOT_TOKEN", "SLACK_APP_TOKEN")
    app_token = settings.slack_app_token
    assert app_token is not None
    # Signals first: a SIGTERM while starting stops the bot cleanly instead of killing it half-started.
    stop = _stop_on_signals()
    client = build_slack_client(settings.slack_bot_token, settings.slack_api_url)
    aios = await bootstrap(settings, SlackTransport(client))
    handler = AsyncSocketModeHandler(build_slack_app(aios, client, _UNUSED_SIGNING_SECRET), app_token)
    handler.client.message_listeners.append(_log_hello)
    scheduler = build_scheduler(aios)
    try:
        # The first URL is asked for here, so that a refused token ends the command with one clear line;
        # the client would retry it for ever, logging a traceback every few seconds.
        handler.client.wss_uri = await _first_connection_url(client, app_token, settings.slack_api_url)
        await handler.connect_async()  # type: ignore[no-untyped-call]
        scheduler.start()
        await aios.recover()
        log.info("socket_mode_connected", planner=aios.llm.name)
        await stop.wait()
    finally:
        if scheduler.running:
            scheduler.shutdown(wait=False)
        await handler.close_async()  # type: ignore[no-untyped-call]
        await close_or_exit(aios)
    log.info("socket_mode_stopped")


def _stop_on_signals() -> asyncio.Event:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return stop


async def _first_connection_url(client: AsyncWebClient, app_token: str, api_url: str) -> str:
    try:
        response = await client.apps_connections_open(app_token=app_token)
    except SlackApiError as exc:
        raise SocketModeStartError(
            f"Slack refused SLACK_APP_TOKEN ({exc.response.get('error', 'unknown error')}). It must be the "
            "app-level token (xapp-…, with the connections:write scope) from the Slack app's Basic Information "
            "page, and Socket Mode must be turned on."
        ) from None
    except (SlackClientError, aiohttp.ClientError, TimeoutError) as exc:
        raise SocketModeStartError(
            f"cannot reach Slack at {api_url} ({type(exc).__name__}: {exc}). Check SLACK_API_URL and the network."
        ) from None
    return str(response["url"])
