"""The Bolt app, for HTTP and Socket Mode alike. Listeners stay thin: check the payload's shape, persist what
must not be lost, ack, and hand the rest to the bus."""

from __future__ import annotations

import asyncio
import re
from typing import Any

import structlog
from slack_bolt.async_app import AsyncAck, AsyncApp
from slack_bolt.error import BoltUnhandledRequestError
from slack_bolt.request.async_request import AsyncBoltRequest
from slack_bolt.response import BoltResponse
from slack_sdk.web.async_client import AsyncWebClient

from bot import blocks
from bot.blocks import APPROVE_ACTION_ID, REJECT_ACTION_ID, REQUEST_BUDGET_ACTION_ID, UNDO_ACTION_ID
from bot.bootstrap import Aios
from bot.content_calendar import calendar_answer
from bot.queries import ANSWERED_IN_THE_ACK, private_answer
from bot.response_url import Asker, answer_late
from bot.run_review import APPROVE_ALL_ACTION_ID, REJECT_ALL_ACTION_ID
from bot.slack_edit import register_edit
from bot.slack_explain import register_explain
from bot.slack_home import approval_channel, decide_from_home, register_home
from bot.slack_metrics import BLOCK_ACTIONS, DIRECT_MESSAGES, MENTIONS, SLASH_COMMANDS
from bot.slack_payloads import (
    ButtonClick,
    EventCallback,
    MessageEvent,
    SlashCommandPayload,
    delivery_id,
    parse_payload,
    payload_type,
)
from bot.slack_rejection import ask_reason, register_rejection
from bot.slash import SlashCommand, bus_command, parse_slash
from bot.store_outage import STORE_UNREACHABLE
from bot.undo import ask_undo, file_undo, undo_action
from runtime.crashpoints import crash_point
from runtime.intake import IncomingIntent, accept_click, accept_run_click
from runtime.messages import DecideApproval, DecideRun, HandleIntent, RequestBudget, TakeOverRun
from runtime.undo_filing import UndoFiling
from storage.ids import parse_key
from storage.records import Click

log = structlog.get_logger(__name__)

_MENTION = re.compile(r"<@[A-Z0-9]+>")
NOT_STORED = (
    "I couldn't store that request, so nothing will be done with it; please send it again in a moment."
)
NOT_READ = "I couldn't read that just now; please ask again in a moment."
# Slack waits 3 s for the ack; an answer read for longer (behind a lock, or a full pool) follows it privately.
QUICK_ANSWER_WAIT_SECONDS = 2.0
ANSWER_FOLLOWS = "Reading that is taking a moment; I'll answer here, to you alone, as soon as I have it."


def build_slack_app(
    aios: Aios, client: AsyncWebClient, signing_secret: str, *, verified_by_caller: bool = False
) -> AsyncApp:
    """The Bolt app. Bolt checks each HTTP request's signature against ``signing_secret`` unless
    ``verified_by_caller``: only for the web server (bot/web.py), which checks the raw body before Bolt sees it.
    Socket Mode requests are authenticated by the app token and carry no signature; Bolt checks none of them."""
    app = AsyncApp(
        client=client,
        signing_secret=signing_secret,
        # The ack is written as soon as the listener returns, and listeners return at once because the work
        # goes to background tasks.
        process_before_response=True,
        # What no listener handles (events the bot ignores, modals, shortcuts, other buttons) goes to on_error,
        # which answers 200: Bolt's default is a 404, which Slack counts as a failed delivery.
        raise_error_for_unhandled_request=True,
        request_verification_enabled=not verified_by_caller,
    )

    @app.command("/aios")
    async def on_slash(ack: AsyncAck, body: dict[str, Any]) -> None:
        SLASH_COMMANDS.inc()
        command = parse_payload(SlashCommandPayload, body, body)
        if command is None:
            await ack(text="That command reached me without a user or a channel, so I can't act on it.")
            return
        parsed = parse_slash(command.text)
        team = command.team_id or ""
        control = bus_command(parsed, team=team, user=command.user_id, channel=command.channel_id)
        if control is not None:
            await ack()
            aios.submit(control)
            return
        if parsed.name in ANSWERED_IN_THE_ACK:
            await _ack_quick_answer(aios, ack, parsed, command)
            return
        if parsed.name == "undo":
            # Checked and claimed before the ack, like an intent is stored before it; proposed after.
            answer = await ask_undo(aios, parsed.argument, command.user_id)
            await ack(text=answer.text)
            if answer.filing is not None:
                _file_in_background(aios, answer.filing, Asker.of_command(command))
            return
        if parsed.name == "calendar":
            await ack()
            aios.background.spawn(
                _answer_calendar(aios, team, parsed.argument, Asker.of_command(command)),
                name="slash_calendar",
            )
            return
        if parsed.name != "intent":  # why and replay: Block Kit, from reads that may take longer
            await ack()
            aios.background.spawn(_answer_query(aios, parsed, Asker.of_command(command)), name="slash_query")
            return
        try:
            intent_id = await aios.accept(
                IncomingIntent(
                    source="slash",
                    team_id=team,
                    channel=command.channel_id,
                    thread_ts=None,
                    user=command.user_id,
                    text=parsed.argument,
                )
            )
        except STORE_UNREACHABLE:
            # Slack never sends a slash command again, so the person is told, rather than shown a failed
            # dispatch; an event's failure still answers 503 (see on_error), so Slack delivers it again.
            log.exception("intent_not_stored", source="slash", user=command.user_id)
            await ack(text=NOT_STORED)
            return
        await ack(text=f"Got it (I-{intent_id}); I'll answer in a thread in this channel.")
        assert intent_id is not None
        aios.submit(HandleIntent(intent_id))

    @app.event("app_mention")
    async def on_mention(ack: AsyncAck, body: dict[str, Any]) -> None:
        MENTIONS.inc()
        callback = parse_payload(EventCallback, body, body)
        await _accept_event(aios, ack, body, callback, source="mention")

    @app.event("message")
    async def on_message(ack: AsyncAck, body: dict[str, Any]) -> None:
        callback = parse_payload(EventCallback, body, body)
        # Only direct messages from people: channel messages arrive as app_mention, and the bot's own
        # messages and edits (subtypes) are not intents.
        event = callback.event if callback else {}
        if event.get("channel_type") != "im" or event.get("bot_id") or event.get("subtype"):
            await ack()
            return
        DIRECT_MESSAGES.inc()
        await _accept_event(aios, ack, body, callback, source="im")

    @app.action(APPROVE_ACTION_ID)
    async def on_approve(ack: AsyncAck, body: dict[str, Any]) -> None:
        await _decide(aios, ack, body, approve=True)

    @app.action(REJECT_ACTION_ID)
    async def on_reject(ack: AsyncAck, body: dict[str, Any]) -> None:
        await _decide(aios, ack, body, approve=False)
        ask_reason(aios, body)  # after the ack: why, and what would be right instead

    @app.action(APPROVE_ALL_ACTION_ID)
    async def on_approve_all(ack: AsyncAck, body: dict[str, Any]) -> None:
        await _decide_run(aios, ack, body, approve=True)

    @app.action(REJECT_ALL_ACTION_ID)
    async def on_reject_all(ack: AsyncAck, body: dict[str, Any]) -> None:
        await _decide_run(aios, ack, body, approve=False)

    @app.action(blocks.TAKE_OVER_ACTION_ID)
    async def on_take_over(ack: AsyncAck, body: dict[str, Any]) -> None:
        BLOCK_ACTIONS.inc()
        await ack()
        click = parse_payload(ButtonClick, body, body)
        run_id = _record_key(click, "R") if click else None
        if click is not None and run_id is not None:
            aios.submit(TakeOverRun(run_id=run_id, user=click.user.id, channel=click.channel_id))

    @app.action(REQUEST_BUDGET_ACTION_ID)
    async def on_request_budget(ack: AsyncAck, body: dict[str, Any]) -> None:
        BLOCK_ACTIONS.inc()
        await ack()
        click = parse_payload(ButtonClick, body, body)
        run_id = _record_key(click, "R") if click else None
        if click is not None and run_id is not None:
            aios.submit(RequestBudget(run_id=run_id, user=click.user.id, channel=click.channel_id))

    @app.action(UNDO_ACTION_ID)
    async def on_undo(ack: AsyncAck, body: dict[str, Any]) -> None:
        """The click's undo is claimed before the ack (a second click finds it claimed), proposed after."""
        BLOCK_ACTIONS.inc()
        click = parse_payload(ButtonClick, body, body)
        action_id = _record_key(click, "A") if click else None
        if click is None or action_id is None:
            await ack()
            return
        answer = await undo_action(aios, action_id, click.user.id)
        await ack()
        crash_point("undo_claimed")  # past it, recovery files the claimed undo (not one of the generic steps)
        asker = Asker.of_click(click)
        aios.background.spawn(answer_late(aios, asker, answer.text), name="undo_answer")
        if answer.filing is not None:
            _file_in_background(aios, answer.filing, asker)

    register_explain(app, aios)
    register_edit(app, aios)

    register_home(app, aios)
    register_rejection(app, aios)

    @app.error
    async def on_error(error: Exception, body: dict[str, Any], request: AsyncBoltRequest) -> BoltResponse:
        kind, event_id = payload_type(body), delivery_id(body)
        if isinstance(error, BoltUnhandledRequestError):
            log.info("slack_request_ignored", type=kind, event_id=event_id)
            return BoltResponse(status=200, body="")
        log.error("slack_listener_failed", type=kind, event_id=event_id, exc_info=error)
        acked = request.context.ack.response
        if acked is not None:
            return acked
        if isinstance(error, STORE_UNREACHABLE):
            # Nothing was stored and nothing acked: a 5xx makes Slack deliver the event again later.
            return BoltResponse(status=503, body="")
        return BoltResponse(status=200, body="")  # delivering it again would fail the same way

    return app


async def _accept_event(
    aios: Aios, ack: AsyncAck, body: dict[str, Any], callback: EventCallback | None, *, source: str
) -> None:
    event = parse_payload(MessageEvent, callback.event, body) if callback else None
    if callback is None or event is None:
        await ack()
        return
    intent_id = await aios.accept(
        IncomingIntent(
            source=source,
            team_id=callback.team_id or "",
            channel=event.channel,
            thread_ts=event.thread_ts or event.ts,
            user=event.user,
            text=_MENTION.sub("", event.text).strip(),
            message_ts=event.ts,
            delivery_key=callback.event_id,
        )
    )
    await ack()
    if intent_id is None:
        log.info("duplicate_delivery_dropped", event_id=callback.event_id)
        return
    aios.submit(HandleIntent(intent_id))


async def _decide(aios: Aios, ack: AsyncAck, body: dict[str, Any], *, approve: bool) -> None:
    """The click is stored before the ack: once Slack has its 200 the click survives a crash (see Recovery)."""
    BLOCK_ACTIONS.inc()
    click = parse_payload(ButtonClick, body, body)
    approval_id = _record_key(click, "AP") if click else None
    if click is None or approval_id is None:
        await ack()
        return
    user, channel = click.user.id, click.channel_id
    if click.in_view:  # on the App Home: told in the approval's thread, as a click on its card would be
        channel = await approval_channel(aios, approval_id)
    seen = blocks.edits_seen(click.block_id)
    click_id = await accept_click(
        aios.units,
        Click(
            approval_id=approval_id,
            user=user,
            approve=approve,
            channel=channel,
            edits_seen=seen,
            owner=aios.lease.id,
        ),
    )
    await ack()
    crash_point("click_stored")
    decide = DecideApproval(approval_id, user, approve, channel, click_id=click_id, edits_seen=seen)
    if click.in_view:
        decide_from_home(aios, decide)
    else:
        aios.submit(decide)


async def _decide_run(aios: Aios, ack: AsyncAck, body: dict[str, Any], *, approve: bool) -> None:
    """Approve all / Reject all: one click stored per approval waiting, before the ack, like a single click."""
    BLOCK_ACTIONS.inc()
    click = parse_payload(ButtonClick, body, body)
    run_id = _record_key(click, "R") if click else None
    if click is None or run_id is None:
        await ack()
        return
    user, channel = click.user.id, click.channel_id
    card_ts = click.container.message_ts if click.container else ""
    click_ids = await accept_run_click(
        aios.units, run_id, user, approve, channel, card_ts, owner=aios.lease.id
    )
    await ack()
    crash_point("click_stored")
    aios.submit(DecideRun(run_id, user, approve, channel, click_ids=click_ids))


def _record_key(click: ButtonClick, prefix: str) -> int | None:
    """The record id a button carries (its value holds only that), if it is of the expected kind."""
    key = parse_key(click.value, prefix)
    if key is None:
        log.warning("click_with_unknown_value", value=click.value[:80], expected=prefix)
        return None
    return key


async def _ack_quick_answer(
    aios: Aios, ack: AsyncAck, command: SlashCommand, payload: SlashCommandPayload
) -> None:
    """The answer in the ack when it is read in time; otherwise the ack says it follows, and it is posted to the
    asker alone once read."""
    if (kept := aios.quick_answers.kept((command.name, command.argument))) is not None:
        await ack(text=kept)
        return
    asked = asyncio.create_task(_quick_answer(aios, command, payload.user_id), name="quick_answer")
    read, _ = await asyncio.wait({asked}, timeout=QUICK_ANSWER_WAIT_SECONDS)
    if read:
        await ack(text=asked.result())
        return
    await ack(text=ANSWER_FOLLOWS)
    aios.background.spawn(_post_when_read(aios, asked, payload), name="slash_quick_answer")


async def _quick_answer(aios: Aios, command: SlashCommand, user: str) -> str:
    """The answer to a quick question; a read that fails is said, as the asker must be answered anyway (an
    empty ack would show them nothing)."""
    try:
        return await aios.quick_answers.ask((command.name, command.argument))
    except STORE_UNREACHABLE:
        log.exception("query_not_answered", command=command.name, user=user)
        return NOT_READ
    except Exception:  # a bug, or a stored value the answer cannot be made from
        log.exception("query_failed", command=command.name, user=user)
        return NOT_READ
    except asyncio.CancelledError:
        task = asyncio.current_task()
        if task is not None and task.cancelling():
            raise
        # The shared read was cancelled under this ask (the store closing at shutdown): still an answer, not
        # an error out of the listener.
        log.warning("query_cancelled", command=command.name, user=user)
        return NOT_READ


async def _post_when_read(aios: Aios, asked: asyncio.Future[str], payload: SlashCommandPayload) -> None:
    await answer_late(aios, Asker.of_command(payload), await asked)


async def _answer_query(aios: Aios, command: SlashCommand, asker: Asker) -> None:
    text, blocks = await private_answer(
        aios.units, command, aios.clock(), aios.settings.candidate_policy_file
    )
    await answer_late(aios, asker, text, blocks)


async def _answer_calendar(aios: Aios, team: str, words: str, asker: Asker) -> None:
    text, blocks = await calendar_answer(
        aios.units, aios.registry, aios.settings.zone, aios.clock(), team, words
    )
    await answer_late(aios, asker, text, blocks)


def _file_in_background(aios: Aios, filing: UndoFiling, asker: Asker) -> None:
    async def file() -> None:
        problem = await file_undo(aios, filing)
        if problem is not None:
            await answer_late(aios, asker, problem)

    aios.background.spawn(file(), name="undo")
