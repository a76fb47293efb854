"""The Bolt app. Listeners stay thin: persist what must not be lost, ack, and hand the rest to the bus."""

from __future__ import annotations

import re
from typing import Any

import structlog
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_sdk.web.async_client import AsyncWebClient

from bot.blocks import APPROVE_ACTION_ID, REJECT_ACTION_ID, REQUEST_BUDGET_ACTION_ID
from bot.bootstrap import Aios
from bot.intake import IncomingIntent
from bot.messages import DecideApproval, HandleIntent, RequestBudget
from bot.observability import SLACK_REQUESTS
from bot.queries import answer
from bot.slash import HELP, SlashCommand, bus_command, parse_slash
from storage.ids import UnknownIdError, parse_id

log = structlog.get_logger(__name__)

_MENTION = re.compile(r"<@[A-Z0-9]+>")


def build_slack_app(aios: Aios, client: AsyncWebClient, signing_secret: str) -> AsyncApp:
    # process_before_response: the ack is written as soon as the listener returns, and listeners
    # return at once because the work goes to background tasks.
    app = AsyncApp(client=client, signing_secret=signing_secret, process_before_response=True)

    @app.command("/aios")
    async def on_slash(ack: AsyncAck, command: dict[str, Any]) -> None:
        SLACK_REQUESTS.labels(kind="slash").inc()
        parsed = parse_slash(command.get("text", ""))
        if parsed.name == "help":
            await ack(text=HELP)
            return
        control = bus_command(
            parsed, team=command.get("team_id", ""), user=command["user_id"], channel=command["channel_id"]
        )
        if control is not None:
            await ack()
            aios.submit(control)
            return
        if parsed.name != "intent":
            await ack()
            aios.background.spawn(
                _answer_privately(aios, parsed, command["channel_id"], command["user_id"]), name="slash_query"
            )
            return
        intent_id = await aios.accept(
            IncomingIntent(
                source="slash",
                team_id=command.get("team_id", ""),
                channel=command["channel_id"],
                thread_ts=None,
                user=command["user_id"],
                text=parsed.argument,
            )
        )
        await ack(text=f"Got it (I-{intent_id}); I'll answer in a thread in this channel.")
        assert intent_id is not None
        aios.submit(HandleIntent(intent_id))

    @app.event("app_mention")
    async def on_mention(ack: AsyncAck, body: dict[str, Any], event: dict[str, Any]) -> None:
        SLACK_REQUESTS.labels(kind="app_mention").inc()
        await _accept_event(aios, ack, body, event, source="mention")

    @app.event("message")
    async def on_message(ack: AsyncAck, body: dict[str, Any], event: dict[str, Any]) -> None:
        # Only direct messages from people: channel messages arrive as app_mention, and the bot's own
        # messages and edits (subtypes) are not intents.
        if event.get("channel_type") != "im" or event.get("bot_id") or event.get("subtype"):
            await ack()
            return
        SLACK_REQUESTS.labels(kind="message_im").inc()
        await _accept_event(aios, ack, body, event, source="im")

    @app.action(APPROVE_ACTION_ID)
    async def on_approve(ack: AsyncAck, body: dict[str, Any]) -> None:
        await _decide(aios, ack, body, approve=True)

    @app.action(REJECT_ACTION_ID)
    async def on_reject(ack: AsyncAck, body: dict[str, Any]) -> None:
        await _decide(aios, ack, body, approve=False)

    @app.action(REQUEST_BUDGET_ACTION_ID)
    async def on_request_budget(ack: AsyncAck, body: dict[str, Any]) -> None:
        SLACK_REQUESTS.labels(kind="block_actions").inc()
        await ack()
        run_id = _record_key(body, "R")
        if run_id is not None:
            aios.submit(RequestBudget(run_id=run_id, user=body["user"]["id"], channel=_channel(body)))

    @app.error
    async def on_error(error: Exception, body: dict[str, Any]) -> None:
        log.error("slack_listener_failed", error=repr(error), type=body.get("type"))

    return app


async def _accept_event(
    aios: Aios, ack: AsyncAck, body: dict[str, Any], event: dict[str, Any], *, source: str
) -> None:
    text = _MENTION.sub("", event.get("text", "")).strip()
    intent_id = await aios.accept(
        IncomingIntent(
            source=source,
            team_id=body.get("team_id", ""),
            channel=event["channel"],
            thread_ts=event.get("thread_ts") or event["ts"],
            user=event.get("user", ""),
            text=text,
            message_ts=event["ts"],
            delivery_key=body.get("event_id"),
        )
    )
    await ack()
    if intent_id is None:
        log.info("duplicate_delivery_dropped", event_id=body.get("event_id"))
        return
    aios.submit(HandleIntent(intent_id))


async def _decide(aios: Aios, ack: AsyncAck, body: dict[str, Any], *, approve: bool) -> None:
    SLACK_REQUESTS.labels(kind="block_actions").inc()
    await ack()
    approval_id = _record_key(body, "AP")
    if approval_id is not None:
        aios.submit(DecideApproval(approval_id, body["user"]["id"], approve, _channel(body)))


def _record_key(body: dict[str, Any], prefix: str) -> int | None:
    """The record id a button carries (its value holds only that), if it is of the expected kind."""
    value = body["actions"][0].get("value", "")
    try:
        found, key = parse_id(value)
    except UnknownIdError:
        found, key = "", 0
    if found != prefix:
        log.warning("click_with_unknown_value", value=value, expected=prefix)
        return None
    return key


def _channel(body: dict[str, Any]) -> str:
    return str((body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id", ""))


async def _answer_privately(aios: Aios, command: SlashCommand, channel: str, user: str) -> None:
    text = await answer(aios.units, command, aios.clock())
    await aios.handlers.transport.post_ephemeral(channel, user, text)
