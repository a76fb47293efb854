"""Accepting an intent or a click: persisted (an intent with its delivery key, atomically) before Slack gets its
ack."""

from __future__ import annotations

from dataclasses import dataclass

from bot.observability import INTENTS
from storage.records import Click, Intent
from storage.unit_of_work import UnitOfWorkFactory

# Every intent belongs to a team (the memory and budget tenant); payloads without one share this one.
DEFAULT_TEAM = "default"


@dataclass(frozen=True)
class IncomingIntent:
    source: str  # slash, mention, im, console
    team_id: str
    channel: str
    thread_ts: str | None
    user: str
    text: str
    message_ts: str | None = None  # the message that carried it, when there is one
    delivery_key: str | None = None  # Slack's event_id; None where Slack never redelivers


async def accept_intent(units: UnitOfWorkFactory, incoming: IncomingIntent, owner: int) -> int | None:
    """Store the intent, owned by the lease ``owner``; None when this delivery was seen before (a Slack retry
    or duplicate)."""
    async with units() as uow:
        key = incoming.delivery_key
        if key is not None and not await uow.repo.first_time(f"slack-event:{key}"):
            return None
        intent = await uow.repo.add(
            Intent(
                source=incoming.source,
                team_id=incoming.team_id or DEFAULT_TEAM,
                channel=incoming.channel,
                thread_ts=incoming.thread_ts,
                user=incoming.user,
                text=incoming.text,
                message_ts=incoming.message_ts,
                owner=owner,
            )
        )
        await uow.commit()
    INTENTS.labels(source=incoming.source).inc()
    assert intent.id is not None
    return intent.id


async def accept_click(units: UnitOfWorkFactory, click: Click) -> int:
    """Store an Approve or Reject click; its id goes with the DecideApproval that handles it."""
    async with units() as uow:
        stored = await uow.repo.add(click)
        await uow.commit()
    assert stored.id is not None
    return stored.id
