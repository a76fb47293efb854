"""In-process timers (APScheduler 3.x): the approval-timer sweep, App Home refreshes, scheduled posts, the
dead-owner sweep, memory retention and the digest.

No job state lives in the scheduler: deadlines are columns in SQL and each firing claims its work with a
compare-and-set, so a restart rebuilds everything from the store and a job fired twice does nothing twice.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.bootstrap import Aios
from bot.digest import digest_trigger
from runtime.messages import PublishDuePosts, SweepTimers

TIMER_SWEEP_SECONDS = 15
# How soon a replica notices that another died and carries on its work (at start it is at once).
DEAD_OWNER_SWEEP_SECONDS = 3
# How soon an App Home shows what has no event of its own (a new approval request, an expiry, a pause).
HOME_REFRESH_SECONDS = 3
MEMORY_MAINTENANCE_MINUTES = 60  # expiry, summaries, caps; expired memories are already invisible to searches


def build_scheduler(aios: Aios) -> AsyncIOScheduler:
    """The jobs of a running bot; a bad AIOS_DIGEST_CRON is refused here, before the bot starts serving."""
    scheduler = AsyncIOScheduler(timezone=UTC)

    async def sweep() -> None:
        await aios.process(SweepTimers())

    _add(
        scheduler,
        sweep,
        IntervalTrigger(seconds=TIMER_SWEEP_SECONDS),
        "approval-timers",
        first_run=aios.clock(),
    )
    # Each Home is drawn again and published only if it changed, so a quiet firing publishes nothing.
    _add(scheduler, aios.home.redraw, IntervalTrigger(seconds=HOME_REFRESH_SECONDS), "home-refresh")

    async def publish_due() -> None:
        await aios.process(PublishDuePosts())

    _add(
        scheduler,
        publish_due,
        IntervalTrigger(seconds=TIMER_SWEEP_SECONDS),
        "scheduled-publishes",
        first_run=aios.clock(),
    )
    _add(
        scheduler,
        aios.take_over_from_the_dead,
        IntervalTrigger(seconds=DEAD_OWNER_SWEEP_SECONDS),
        "dead-owner-sweep",
    )
    _add(
        scheduler,
        aios.memory.maintain,
        IntervalTrigger(minutes=MEMORY_MAINTENANCE_MINUTES),
        "memory-retention",
        first_run=aios.clock(),
    )
    if aios.settings.digest_channel:
        trigger = digest_trigger(aios.settings.digest_cron)
        _add(scheduler, aios.post_digest, trigger, "digest", misfire_grace_time=3600)
    return scheduler


def build_lease_keeper(aios: Aios) -> AsyncIOScheduler:
    """The one job of a front door that leaves the work to workers (`aios serve --no-work`): keep its lease,
    which the runs of the clicks it decides record."""
    scheduler = AsyncIOScheduler(timezone=UTC)
    _add(scheduler, aios.lease.keep, IntervalTrigger(seconds=DEAD_OWNER_SWEEP_SECONDS), "lease")
    return scheduler


def _add(
    scheduler: AsyncIOScheduler,
    job: Callable[[], Awaitable[object]],
    trigger: BaseTrigger,
    job_id: str,
    *,
    first_run: datetime | None = None,
    **options: Any,
) -> None:
    """One job, never two firings of it at once; a backlog of missed firings (the process was down, or the
    loop was busy) runs once, not once per missed firing. ``first_run``: when it first fires, if not one interval
    from now."""
    if first_run is not None:
        options["next_run_time"] = first_run
    scheduler.add_job(job, trigger, id=job_id, coalesce=True, max_instances=1, **options)
