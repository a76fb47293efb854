"""Scheduled posts go out: a publish that scheduled a post leaves a timer row (in the transaction that records
its execution), and the sweep settles each row once its time has come.

No CMS is trusted to publish on time by itself (WordPress's cron runs only when the site is visited), so at its
time the row is claimed with a compare-and-set (one replica acts), the CMS is asked to make sure the post is
live, the outcome is recorded and the thread is told. A CMS that cannot be reached is tried again later, with
the thread told once; nothing is lost to a restart, since the rows are the only state.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from agents.dates import describe
from bot.handlers.base import HandlerBase, Thread
from bot.messagebus import Message
from bot.messages import ActionExecuted, PublishDuePosts
from bot.mrkdwn import escape
from connectors.actions import CmsPublish
from connectors.due_publishing import DueOutcome, DuePublish, PublishesWhenDue
from connectors.errors import ConnectorError
from connectors.registry import ConnectorRegistry
from storage.ids import format_id
from storage.records import Intent, ProposedAction, Run, ScheduledPublish
from storage.scheduled_publishes import ScheduledPublishes
from storage.unit_of_work import UnitOfWork

log = structlog.get_logger(__name__)

ATTEMPT_TIMEOUT_SECONDS = 30.0
# A claim of this process's own older than this is one whose settling failed (the store, say): an attempt
# ends within its timeout, and the lease says this process is alive, so nobody else would ever take it.
STUCK_CLAIM = timedelta(seconds=2 * ATTEMPT_TIMEOUT_SECONDS)
FIRST_RETRY = timedelta(minutes=1)
LONGEST_WAIT = timedelta(hours=1)
# Published within this of its time (a sweep runs every 15 s), a post is told as live since then.
ON_TIME = timedelta(minutes=1)


async def record_due_publish(
    uow: UnitOfWork,
    registry: ConnectorRegistry,
    zone: ZoneInfo,
    action_id: int,
    result: dict[str, Any],
) -> None:
    """Called in the transaction that books a succeeded execution: a publish the CMS holds as scheduled gets its
    timer row there, so that no scheduled post exists without one."""
    proposed = await uow.repo.get(ProposedAction, action_id)
    if proposed is None or proposed.name != CmsPublish.name or result.get("status") != "scheduled":
        return
    action = registry.validate(proposed.name, proposed.params)
    assert isinstance(action, CmsPublish) and action.publish_at is not None
    run = await uow.repo.get(Run, proposed.run_id)
    intent = await uow.repo.get(Intent, run.intent_id) if run is not None else None
    assert intent is not None
    uow.repo.session.add(
        ScheduledPublish(
            action_id=action_id,
            slug=action.slug,
            connector=registry.connector_label(CmsPublish.name),
            publish_at=action.publish_at,
            zone=zone.key,
            channel=intent.channel,
            thread_ts=intent.thread_ts,
        )
    )


class ScheduledPublishing(HandlerBase):
    async def confirm(self, event: ActionExecuted) -> Sequence[Message]:
        """Once a schedule is executed, the thread is told when the post goes out, in the team's zone."""
        async with self.units() as uow:
            row = await ScheduledPublishes(uow.repo.session).of_action(event.action_id)
        if row is not None:
            await self._say(
                Thread(row.channel, row.thread_ts),
                f":calendar: {row.slug} goes out {describe(row.publish_at, ZoneInfo(row.zone))}; "
                "I'll say here when it is live.",
                context=f"`{format_id('A', row.action_id)}`",
            )
        return []

    async def publish_due(self, command: PublishDuePosts) -> Sequence[Message]:
        """Run at start and every few seconds, on every replica; each row is acted on by one of them."""
        now = self.clock()
        async with self.units() as uow:
            due = await ScheduledPublishes(uow.repo.session).due(now)
        owners = {row.claimed_by for row in due if row.claimed_by is not None}
        alive = await self.lease.alive(owners) if owners else set()
        for row in due:
            if row.claimed_by in alive and not self._stuck_here(row, now):
                continue  # in hand here or on a live replica
            try:  # one row's failure (the store, a bug) leaves the others to be published
                async with self.units() as uow:
                    claimed = await ScheduledPublishes(uow.repo.session).claim(row, self.lease.id, now)
                    await uow.commit()
                if claimed is not None:
                    await self._publish(claimed)
            except Exception:
                log.exception("scheduled_publish_sweep_failed", publish=row.id)
        return []

    def _stuck_here(self, row: ScheduledPublish, now: datetime) -> bool:
        return (
            row.claimed_by == self.lease.id
            and row.claimed_at is not None
            and now - row.claimed_at > STUCK_CLAIM
        )

    async def _publish(self, row: ScheduledPublish) -> None:
        assert row.id is not None
        # The CMS configured now: one that does not hold the post (the settings changed since) says so.
        connector = self.registry.connector_for(CmsPublish.name)
        try:
            if not isinstance(connector, PublishesWhenDue):
                done = DuePublish(DueOutcome.LEFT_ALONE, f"{type(connector).__name__} cannot publish it")
            else:
                async with asyncio.timeout(ATTEMPT_TIMEOUT_SECONDS):
                    done = await connector.publish_due(row.slug, row.publish_at)
        except Exception as exc:
            # Any failure (the CMS down, refusing, or a bug) is tried again later, never dropped.
            if not isinstance(exc, TimeoutError | ConnectorError):
                log.exception("scheduled_publish_failed_unexpectedly", publish=row.id)
            await self._try_again_later(row, self.registry.redactor.text(str(exc) or type(exc).__name__))
            return
        async with self.units() as uow:
            settled = await ScheduledPublishes(uow.repo.session).settle(
                row.id, self.lease.id, self.clock(), done.outcome.value, done.detail or None
            )
            await uow.commit()
        if settled:
            log.info(
                "scheduled_publish_settled", publish=row.id, action=row.action_id, outcome=done.outcome.value
            )
            await self._tell(row, done)

    async def _try_again_later(self, row: ScheduledPublish, error: str) -> None:
        assert row.id is not None
        wait = min(FIRST_RETRY * 2**row.attempts, LONGEST_WAIT)
        at = self.clock() + wait
        async with self.units() as uow:
            released = await ScheduledPublishes(uow.repo.session).try_again(row.id, self.lease.id, error, at)
            await uow.commit()
        log.warning("scheduled_publish_retrying", publish=row.id, attempts=row.attempts + 1, error=error)
        if released and row.attempts == 0:
            zone = ZoneInfo(row.zone)
            await self._say(
                Thread(row.channel, row.thread_ts),
                f":warning: {row.slug} was due {describe(row.publish_at, zone)}, but {row.connector} could not "
                f"publish it yet ({escape(error)}). I'll keep trying, next at {describe(at, zone)}.",
                context=f"`{format_id('A', row.action_id)}`",
            )

    async def _tell(self, row: ScheduledPublish, done: DuePublish) -> None:
        zone = ZoneInfo(row.zone)
        due = describe(row.publish_at, zone)
        tries = f" (after {row.attempts + 1} tries)" if row.attempts else ""
        now = self.clock()
        if done.outcome == DueOutcome.PUBLISHED and now - row.publish_at <= ON_TIME:
            text = f":rocket: {row.slug} is live since {due}{tries}."
        elif done.outcome == DueOutcome.PUBLISHED:
            text = f":rocket: {row.slug} is live since {describe(now, zone)}; it was due {due}{tries}."
        elif done.outcome == DueOutcome.ALREADY_LIVE:
            text = f":rocket: {row.slug} is live since {due}: {row.connector} had published it already."
        else:
            later = f" for {describe(done.rescheduled_to, zone)}" if done.rescheduled_to is not None else ""
            text = f":information_source: {row.slug} was due {due} and was left as it is: {escape(done.detail)}{later}."
        await self._say(
            Thread(row.channel, row.thread_ts), text, context=f"`{format_id('A', row.action_id)}`"
        )
