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
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from agents.dates import describe
from connectors.actions import CmsPublish
from connectors.due_publishing import DueOutcome, DuePublish, PublishesWhenDue
from connectors.errors import ConnectorError
from connectors.registry import ConnectorRegistry
from policies.windows import is_open, next_opening
from runtime.handlers.base import HandlerBase
from runtime.messagebus import Message
from runtime.messages import ActionExecuted, PublishDuePosts, ScheduledPostLive
from runtime.mrkdwn import escape
from runtime.notices import Thread
from storage.ids import format_id
from storage.records import Intent, ProposedAction, ScheduledPublish
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
# How the thread names the CMS a timer row records (by its connector's class).
_CMS_NAMES = {"SandboxCms": "the sandbox CMS", "WordPressCms": "WordPress"}


async def record_due_publish(
    uow: UnitOfWork,
    registry: ConnectorRegistry,
    zone: ZoneInfo,
    proposed: ProposedAction,
    intent: Intent,
    result: dict[str, Any],
) -> None:
    """Called in the transaction that books a succeeded execution, with its action and the intent that asked for
    it: a publish the CMS holds as scheduled gets its timer row there, so that no scheduled post exists without
    one."""
    if proposed.name != CmsPublish.name or result.get("status") != "scheduled":
        return
    action = registry.validate(proposed.name, proposed.params)
    assert isinstance(action, CmsPublish) and action.publish_at is not None and proposed.id is not None
    uow.session.add(
        ScheduledPublish(
            action_id=proposed.id,
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
        executed = event.action
        if executed.name != CmsPublish.name or executed.result.get("status") != "scheduled":
            return []  # no timer row was written for it (record_due_publish)
        async with self.units() as uow:
            row = await ScheduledPublishes(uow.session).of_action(event.action_id)
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
            due = await ScheduledPublishes(uow.session).due(now)
        owners = {row.claimed_by for row in due if row.claimed_by is not None}
        alive = await self.lease.alive(owners) if owners else set()
        live: list[Message] = []
        for row in due:
            if row.claimed_by in alive and not self._stuck_here(row, now):
                continue  # in hand here or on a live replica
            try:  # one row's failure (the store, a bug) leaves the others to be published
                async with self.units() as uow:
                    claimed = await ScheduledPublishes(uow.session).claim(row, self.lease.id, now)
                    await uow.commit()
                if claimed is not None:
                    live.extend(await self._publish(claimed))
            except Exception:
                log.exception("scheduled_publish_sweep_failed", publish=row.id)
        return live

    def _stuck_here(self, row: ScheduledPublish, now: datetime) -> bool:
        return (
            row.claimed_by == self.lease.id
            and row.claimed_at is not None
            and now - row.claimed_at > STUCK_CLAIM
        )

    async def _publish(self, row: ScheduledPublish) -> Sequence[Message]:
        assert row.id is not None
        if await self._wait_for_a_window(row):
            return []
        # The CMS configured now: one that does not hold the post (the settings changed since) says so.
        connector = self.registry.connector_for(CmsPublish.name)
        try:
            if not isinstance(connector, PublishesWhenDue):
                done = DuePublish(
                    DueOutcome.LEFT_ALONE, f"{_cms_name(type(connector).__name__)} cannot publish it"
                )
            else:
                async with asyncio.timeout(ATTEMPT_TIMEOUT_SECONDS):
                    done = await connector.publish_due(row.slug, row.publish_at)
        except Exception as exc:
            # Any failure (the CMS down, refusing, or a bug) is tried again later, never dropped.
            if not isinstance(exc, TimeoutError | ConnectorError):
                log.exception("scheduled_publish_failed_unexpectedly", publish=row.id)
            await self._try_again_later(row, self.registry.redactor.text(str(exc) or type(exc).__name__))
            return []
        now = self.clock()
        async with self.units() as uow:
            settled = await ScheduledPublishes(uow.session).settle(
                row.id, self.lease.id, now, done.outcome.value, done.detail or None
            )
            await uow.commit()
        if not settled:
            return []
        log.info(
            "scheduled_publish_settled", publish=row.id, action=row.action_id, outcome=done.outcome.value
        )
        await self._tell(row, done)
        if done.outcome == DueOutcome.LEFT_ALONE:
            return []
        late = done.outcome == DueOutcome.PUBLISHED and now - row.publish_at > ON_TIME
        return [ScheduledPostLive(row.action_id, now if late else row.publish_at)]

    async def _wait_for_a_window(self, row: ScheduledPublish) -> bool:
        """A post whose time passed while the CMS could not be reached (or the bot was down) waits for the next
        publishing window rather than going out when readers were not meant to see it; the thread is told."""
        assert row.id is not None
        windows = self.policy.document.publishing.windows
        zone = ZoneInfo(row.zone)
        now = self.clock()
        local = now.astimezone(zone)
        if now - row.publish_at <= ON_TIME or is_open(windows, local):
            return False
        opening = next_opening(windows, local)
        if opening is None:
            return False
        async with self.units() as uow:
            released = await ScheduledPublishes(uow.session).wait_until(
                row.id, self.lease.id, opening.astimezone(UTC)
            )
            await uow.commit()
        if released:
            log.info("scheduled_publish_waiting_for_window", publish=row.id, until=opening.isoformat())
            await self._say(
                Thread(row.channel, row.thread_ts),
                f":hourglass: {row.slug} was due {describe(row.publish_at, zone)} and is not live yet; now is "
                f"outside the publishing windows, so it goes out when the next one opens, "
                f"{describe(opening, zone)}.",
                context=f"`{format_id('A', row.action_id)}`",
            )
        return True

    async def _try_again_later(self, row: ScheduledPublish, error: str) -> None:
        assert row.id is not None
        wait = min(FIRST_RETRY * 2**row.attempts, LONGEST_WAIT)
        at = self.clock() + wait
        async with self.units() as uow:
            released = await ScheduledPublishes(uow.session).try_again(row.id, self.lease.id, error, at)
            await uow.commit()
        log.warning("scheduled_publish_retrying", publish=row.id, attempts=row.attempts + 1, error=error)
        if released and row.attempts == 0:
            zone = ZoneInfo(row.zone)
            await self._say(
                Thread(row.channel, row.thread_ts),
                f":warning: {row.slug} was due {describe(row.publish_at, zone)}, but {_cms_name(row.connector)} "
                f"could not publish it yet ({escape(error)}). I'll keep trying, next at {describe(at, zone)}.",
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
            text = f":rocket: {row.slug} is live since {due}: {_cms_name(row.connector)} had published it already."
        else:
            later = f" for {describe(done.rescheduled_to, zone)}" if done.rescheduled_to is not None else ""
            text = f":information_source: {row.slug} was due {due} and was left as it is: {escape(done.detail)}{later}."
        await self._say(
            Thread(row.channel, row.thread_ts), text, context=f"`{format_id('A', row.action_id)}`"
        )


def _cms_name(label: str) -> str:
    return _CMS_NAMES.get(label, "the CMS")
