"""In-process timers (APScheduler 3.x): the approval-timer sweep, App Home refreshes, scheduled posts, the
dead-owner sweep, memory retention and the digest.

No job state lives in the scheduler: deadlines are columns in SQL and each firing claims its work with a
compare-and-set, so a restart rebuilds everything from the store and a job fired twice does nothing twice.
"""

from __future__ import annotations

from datetime import UTC

from apscheduler.schedulers.asyncio import AsyncIOScheduler
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

    # coalesce: a backlog of missed firings (the process was down) runs once, not once per missed firing.
    scheduler.add_job(
        sweep,
        IntervalTrigger(seconds=TIMER_SWEEP_SECONDS),
        id="approval-timers",
        coalesce=True,
        max_instances=1,
        next_run_time=aios.clock(),
    )

    # Each Home is drawn again and published only if it changed, so a quiet firing publishes nothing.
    scheduler.add_job(
        aios.home.redraw,
        IntervalTrigger(seconds=HOME_REFRESH_SECONDS),
        id="home-refresh",
        coalesce=True,
        max_instances=1,
    )

    async def publish_due() -> None:
        await aios.process(PublishDuePosts())

    scheduler.add_job(
        publish_due,
        IntervalTrigger(seconds=TIMER_SWEEP_SECONDS),
        id="scheduled-publishes",
        coalesce=True,
        max_instances=1,
        next_run_time=aios.clock(),
    )
    scheduler.add_job(
        aios.take_over_from_the_dead,
        IntervalTrigger(seconds=DEAD_OWNER_SWEEP_SECONDS),
        id="dead-owner-sweep",
        coalesce=True,
        max_instances=1,
    )
    scheduler.add_job(
        aios.memory.maintain,
        IntervalTrigger(minutes=MEMORY_MAINTENANCE_MINUTES),
        id="memory-retention",
        coalesce=True,
        max_instances=1,
        next_run_time=aios.clock(),
    )
    if aios.settings.digest_channel:
        scheduler.add_job(
            aios.post_digest,
            digest_trigger(aios.settings.digest_cron),
            id="digest",
            coalesce=True,
            misfire_grace_time=3600,
            max_instances=1,
        )
    return scheduler


def build_lease_keeper(aios: Aios) -> AsyncIOScheduler:
    """The one job of a front door that leaves the work to workers (`aios serve --no-work`): keep its lease,
    which the runs of the clicks it decides record."""
    scheduler = AsyncIOScheduler(timezone=UTC)
    scheduler.add_job(
        aios.lease.keep,
        IntervalTrigger(seconds=DEAD_OWNER_SWEEP_SECONDS),
        id="lease",
        coalesce=True,
        max_instances=1,
    )
    return scheduler
