"""Explaining from Slack itself: the "Explain this" message shortcut on any of our messages, and the buttons of a
`/aios why` answer. Both answer privately with `/aios why` of a record; the listeners only check the payload,
ack, and leave the reading to a background task."""

from __future__ import annotations

import re
from typing import Any

from pydantic import BaseModel, ConfigDict
from slack_bolt.async_app import AsyncAck, AsyncApp, AsyncBoltContext
from sqlmodel import select

from bot.bootstrap import Aios
from bot.message_ids import is_ours, record_of_message
from bot.queries import why_answer
from bot.response_url import Asker, answer_late
from bot.slack_metrics import BLOCK_ACTIONS, MESSAGE_ACTIONS
from bot.slack_payloads import (
    ButtonClick,
    MaybeSlackId,
    SlackId,
    parse_payload,
)
from bot.why_blocks import WHY_OPEN_PREFIX
from storage.ids import format_id
from storage.records import Approval, ProposedAction
from storage.unit_of_work import UnitOfWorkFactory

EXPLAIN_CALLBACK_ID = "aios_explain"
NOT_MINE = (
    "That message isn't one of mine, so there's nothing to explain. "
    "`/aios why <id>` explains a record by its id."
)


class _Shape(BaseModel):
    model_config = ConfigDict(extra="allow", frozen=True)


class _Who(_Shape):
    id: SlackId


class _Message(_Shape):
    ts: SlackId
    thread_ts: MaybeSlackId | None = None


class MessageShortcut(_Shape):
    """A `message_action` payload: who chose the shortcut, where, and the message as Slack holds it."""

    user: _Who
    channel: _Who
    message: _Message
    response_url: str | None = None  # where answers after the ack go


def register_explain(app: AsyncApp, aios: Aios) -> None:
    @app.shortcut(EXPLAIN_CALLBACK_ID)
    async def on_explain(ack: AsyncAck, body: dict[str, Any], context: AsyncBoltContext) -> None:
        MESSAGE_ACTIONS.inc()
        await ack()
        shortcut = parse_payload(MessageShortcut, body, body)
        if shortcut is None:
            return
        # The message as sent (blocks and all): the model keeps only what it checks.
        message = body["message"]
        aios.background.spawn(
            _explain_message(aios, shortcut, message, context.bot_id), name="explain_message"
        )

    @app.action(re.compile(f"^{WHY_OPEN_PREFIX}"))
    async def on_why_open(ack: AsyncAck, body: dict[str, Any]) -> None:
        BLOCK_ACTIONS.inc()
        await ack()
        click = parse_payload(ButtonClick, body, body)
        if click is None or not click.channel_id:
            return
        # A button of an answer in a thread: the next answer goes there too.
        thread_ts = (click.container.model_extra or {}).get("thread_ts") if click.container else None
        asker = Asker.of_click(click, thread_ts=thread_ts if isinstance(thread_ts, str) else None)
        aios.background.spawn(_open_why(aios, asker, click.value), name="why_open")


async def _explain_message(
    aios: Aios, shortcut: MessageShortcut, message: dict[str, Any], bot_id: str | None
) -> None:
    record = record_of_message(message, bot_id)
    if record is None and is_ours(message, bot_id):
        # A card whose small print names no single record (a review card once decided): by the message itself.
        record = await record_of_card(aios.units, shortcut.channel.id, shortcut.message.ts)
    text, blocks = await why_answer(aios.units, record) if record is not None else (NOT_MINE, None)
    asker = Asker(
        shortcut.channel.id, shortcut.user.id, shortcut.response_url, thread_ts=shortcut.message.thread_ts
    )
    await answer_late(aios, asker, text, blocks)


async def _open_why(aios: Aios, asker: Asker, record: str) -> None:
    """A button's record (its value holds only the id) explained; a value that is no id gets the usage."""
    text, blocks = await why_answer(aios.units, record)
    await answer_late(aios, asker, text, blocks)


async def record_of_card(units: UnitOfWorkFactory, channel: str, ts: str) -> str | None:
    """The approval whose card is the message at ``ts``, or the run of the approvals a review card there holds."""
    async with units() as uow:
        query = select(Approval).where(Approval.channel == channel, Approval.message_ts == ts)
        approvals = (await uow.session.exec(query)).all()
        if len(approvals) == 1:
            return format_id("AP", approvals[0].id)
        runs = set()
        for approval in approvals:
            action = await uow.get(ProposedAction, approval.action_id)
            runs.add(action.run_id if action else None)
    run = runs.pop() if len(runs) == 1 else None
    return format_id("R", run) if run is not None else None
