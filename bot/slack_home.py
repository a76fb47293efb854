"""The App Home in Slack: opening the Home tab publishes the person's Home (see ``bot.app_home``), and a decision
clicked on it is told where a click on the card would be, and on the clicker's Home, where they are looking."""

from __future__ import annotations

from typing import Any

import structlog
from pydantic import BaseModel, ConfigDict
from slack_bolt.async_app import AsyncAck, AsyncApp

from bot.bootstrap import Aios
from bot.slack_metrics import APP_HOME_OPENINGS
from bot.slack_payloads import EventCallback, SlackId, parse_payload
from runtime.messages import DecideApproval
from storage.home_viewers import HomeViewers
from storage.records import Approval

log = structlog.get_logger(__name__)


class _HomeOpened(BaseModel):
    """An ``app_home_opened`` event: whose Home, and which tab (home or messages)."""

    model_config = ConfigDict(extra="allow", frozen=True)

    user: SlackId
    tab: str = ""


def register_home(app: AsyncApp, aios: Aios) -> None:
    @app.event("app_home_opened")
    async def on_home_opened(ack: AsyncAck, body: dict[str, Any]) -> None:
        """Acked at once: nothing here must survive a crash, since opening the tab again does it all again."""
        APP_HOME_OPENINGS.inc()
        await ack()
        callback = parse_payload(EventCallback, body, body)
        opened = parse_payload(_HomeOpened, callback.event, body) if callback else None
        if callback is None or opened is None:
            return
        if opened.tab != "home":
            return  # the Messages tab is a conversation, not a view
        home = aios.home.opened(opened.user, callback.team_id or "")
        aios.background.spawn(home, name="home_opened")


async def approval_channel(aios: Aios, approval_id: int) -> str:
    """Where a decision clicked on the Home is told: the approval's channel (in its thread), as for its card."""
    async with aios.units() as uow:
        approval = await uow.get(Approval, approval_id)
    return approval.channel if approval is not None else ""


def decide_from_home(aios: Aios, command: DecideApproval) -> None:
    """Decide as for a click on the card, then tell the clicker what came of it at the top of their Home."""

    async def decide_then_tell() -> None:
        async with aios.units() as uow:
            before = await HomeViewers(uow.session).newest_decision()
        await aios.process(command)
        await aios.home.clicked(command, before)

    aios.background.spawn(decide_then_tell(), name=type(command).__name__)
