"""The scheduled digest: model spend, errors, escalations to people and waiting approvals for a period, posted
once per period.

`bot/scheduler.py` fires it at AIOS_DIGEST_CRON; every replica may fire, and the `once` row keyed by the period
makes exactly one post. `aios digest --now` builds the same digest on demand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import structlog
from apscheduler.triggers.cron import CronTrigger
from slack_sdk.models.blocks import Block, ContextBlock, HeaderBlock, MarkdownTextObject, SectionBlock

from policies.model import Budget
from runtime.transport import Transport, TransportError
from storage.escalations import Escalations
from storage.ids import format_id
from storage.repositories.budgets import CostRow
from storage.unit_of_work import UnitOfWorkFactory

log = structlog.get_logger(__name__)

PERIOD = timedelta(days=1)
TOP_WORKFLOWS = 5


class DigestScheduleError(ValueError):
    """AIOS_DIGEST_CRON is not a crontab expression."""


@dataclass(frozen=True)
class PendingApproval:
    approval_id: str
    action: str
    requester: str
    age: timedelta


@dataclass(frozen=True)
class BudgetUse:
    budget_id: str
    scope_value: str
    period: str
    spent_usd: float
    ceiling_usd: float

    @property
    def share(self) -> float:
        return self.spent_usd / self.ceiling_usd if self.ceiling_usd else 1.0


@dataclass(frozen=True)
class Digest:
    since: datetime
    until: datetime
    by_agent: list[CostRow]
    top_runs: list[CostRow]
    completed_runs: int
    errors: dict[str, int]
    pending: list[PendingApproval]
    budgets_near_limit: list[BudgetUse]
    # Runs handed to people in the period, by how they stand now: open, answered, taken_over.
    escalations: dict[str, int] = field(default_factory=dict)

    @property
    def total_usd(self) -> float:
        return sum(row.cost_usd for row in self.by_agent)

    @property
    def cost_per_completed_run(self) -> float | None:
        return self.total_usd / self.completed_runs if self.completed_runs else None


async def build_digest(
    units: UnitOfWorkFactory, until: datetime, budgets: Sequence[Budget] = (), period: timedelta = PERIOD
) -> Digest:
    since = until - period
    warn_at = {budget.id: budget.warn_at for budget in budgets}
    async with units() as uow:
        by_agent = await uow.budgets.llm_costs("agent", since, until)
        # One more than shown: the calls of no run (routing) may be among the costliest.
        runs = await uow.budgets.llm_costs("run", since, until, limit=TOP_WORKFLOWS + 1)
        top_runs = [r for r in runs if r.key != "-"][:TOP_WORKFLOWS]
        completed = await uow.budgets.completed_runs(since, until)
        errors = await uow.budgets.error_counts(since, until)
        pending = [
            PendingApproval(
                format_id("AP", approval.id), action, approval.requester, until - approval.created_at
            )
            for approval, action in await uow.approvals.pending_approvals_with_action_names()
        ]
        escalations = await Escalations(uow.session).counts(since, until)
        near = [
            BudgetUse(a.budget_id, a.scope_value, a.period, a.spent_usd, a.limit_usd + a.granted_usd)
            for a in await uow.budgets.budget_accounts([until.strftime("%Y-%m-%d"), until.strftime("%Y-%m")])
            if a.budget_id in warn_at and a.spent_usd >= warn_at[a.budget_id] * (a.limit_usd + a.granted_usd)
        ]
    return Digest(since, until, by_agent, top_runs, completed, errors, pending, near, escalations)


def digest_message(digest: Digest) -> tuple[str, list[dict[str, Any]]]:
    per_run = digest.cost_per_completed_run
    summary = f"*${digest.total_usd:.4f}* on model calls · {digest.completed_runs} automations completed" + (
        f" · *${per_run:.4f}* per completed automation" if per_run is not None else ""
    )
    agents = (
        "\n".join(
            f"• {r.key}: ${r.cost_usd:.4f} over {r.calls} calls ({r.failures} failed)"
            for r in digest.by_agent
        )
        or "• no model calls"
    )
    runs = (
        "\n".join(f"• R-{r.key}: ${r.cost_usd:.4f} over {r.calls} calls" for r in digest.top_runs) or "• none"
    )
    errors = (
        "\n".join(
            f"• {kind.replace('_', ' ')}: {count}" for kind, count in sorted(digest.errors.items()) if count
        )
        or "• none"
    )
    pending = (
        "\n".join(
            f"• `{p.approval_id}` {p.action} for <@{p.requester}>, waiting {_age(p.age)}"
            for p in digest.pending
        )
        or "• none"
    )
    near = (
        "\n".join(
            f"• `{b.budget_id}` ({b.scope_value}, {b.period}): "
            f"${b.spent_usd:.4f} of ${b.ceiling_usd:.2f} ({b.share:.0%})"
            for b in digest.budgets_near_limit
        )
        or "• none"
    )
    raised = sum(digest.escalations.values())
    escalations = (
        f"• {raised} raised: "
        + ", ".join(
            f"{digest.escalations.get(status, 0)} {label}"
            for status, label in (("answered", "answered"), ("taken_over", "taken over"), ("open", "waiting"))
        )
        if raised
        else "• none"
    )
    blocks: list[Block] = [
        HeaderBlock(block_id="digest_header", text="AIOS digest"),
        SectionBlock(block_id="digest_summary", text=MarkdownTextObject(text=summary)),
        SectionBlock(block_id="digest_agents", text=MarkdownTextObject(text=f"*Spend by agent*\n{agents}")),
        SectionBlock(block_id="digest_runs", text=MarkdownTextObject(text=f"*Costliest workflows*\n{runs}")),
        SectionBlock(block_id="digest_errors", text=MarkdownTextObject(text=f"*Errors*\n{errors}")),
        SectionBlock(
            block_id="digest_escalations",
            text=MarkdownTextObject(text=f"*Escalations to people*\n{escalations}"),
        ),
        SectionBlock(
            block_id="digest_pending", text=MarkdownTextObject(text=f"*Approvals waiting*\n{pending}")
        ),
        SectionBlock(
            block_id="digest_budgets", text=MarkdownTextObject(text=f"*Budgets near their limit*\n{near}")
        ),
        ContextBlock(
            block_id="digest_period",
            elements=[
                MarkdownTextObject(text=f"{digest.since:%Y-%m-%d %H:%M} – {digest.until:%Y-%m-%d %H:%M} UTC")
            ],
        ),
    ]
    text = (
        f"AIOS digest: ${digest.total_usd:.4f} on model calls, {sum(digest.errors.values())} errors, "
        f"{raised} escalations, {len(digest.pending)} approvals waiting"
    )
    return text, [block.to_dict() for block in blocks]


def _age(age: timedelta) -> str:
    hours = int(age.total_seconds() // 3600)
    return (
        f"{hours // 24}d {hours % 24}h" if hours >= 24 else f"{hours}h {int(age.total_seconds() // 60) % 60}m"
    )


async def post_digest(
    units: UnitOfWorkFactory,
    transport: Transport,
    channel: str,
    until: datetime,
    budgets: Sequence[Budget] = (),
) -> bool:
    """Post the digest of the period ending at ``until`` (to the minute) unless it was posted already."""
    until = until.replace(second=0, microsecond=0)
    key = f"digest:{channel}:{until.isoformat()}"
    async with units() as uow:
        if not await uow.first_time(key):
            log.info("digest_already_posted", period_end=until.isoformat())
            return False
        await uow.commit()
    text, blocks = digest_message(await build_digest(units, until, budgets))
    try:
        await transport.post(channel, text, blocks=blocks)
    except TransportError:
        # Give the period back so the next firing (or `aios digest --now`) can post it.
        async with units() as uow:
            await uow.forget_once(key)
            await uow.commit()
        raise
    return True


_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")


def digest_trigger(cron: str) -> CronTrigger:
    """A standard 5-field crontab in UTC. APScheduler 3 counts weekdays from Monday=0 where crontab counts
    from Sunday=0, so the weekday field is spelled out as day names before it is handed over."""
    try:
        fields = cron.split()
        if len(fields) != 5:
            raise ValueError(f"expected 5 fields, got {len(fields)}")
        minute, hour, day, month, weekday = fields
        return CronTrigger(
            minute=minute, hour=hour, day=day, month=month, day_of_week=_weekdays(weekday), timezone=UTC
        )
    except ValueError as exc:
        raise DigestScheduleError(
            f"AIOS_DIGEST_CRON {cron!r} is not a crontab expression ({exc}); for example 0 9 * * * (09:00 UTC daily)"
        ) from exc


# How far back to look for the firing a moment belongs to: short windows first, so an every-minute schedule
# is not walked for a year; a year covers any crontab.
_LOOKBACK = (timedelta(hours=1), timedelta(days=1), timedelta(days=32), timedelta(days=367))


def digest_period(cron: str, fired_at: datetime) -> datetime:
    """The scheduled firing that ``fired_at`` belongs to: the newest one at or before it.

    This, not the moment a job ran, names the period, so replicas firing at 09:00:00 and 09:00:59, or a
    restart that fires late at 09:05, all post the 09:00 digest once."""
    trigger = digest_trigger(cron)
    for lookback in _LOOKBACK:
        newest: datetime | None = None
        moment: datetime | None = trigger.get_next_fire_time(None, fired_at - lookback)
        while moment is not None and moment <= fired_at:
            newest = moment
            moment = trigger.get_next_fire_time(moment, moment + timedelta(minutes=1))
        if newest is not None:
            return newest
    return fired_at.replace(second=0, microsecond=0)


def _weekdays(field: str) -> str:
    """Crontab weekdays (0 or 7 = Sunday; lists, ranges, steps) as APScheduler day names."""
    if field == "*":
        return "*"
    days: set[int] = set()
    for part in field.split(","):
        span, _, step_text = part.partition("/")
        step = int(step_text) if step_text else 1
        if span == "*":
            low, high = 0, 6
        elif "-" in span:
            low_text, high_text = span.split("-", 1)
            low, high = _day(low_text), _day(high_text)
        else:
            low = high = _day(span)
        if high < low or step < 1:
            raise ValueError(f"weekday range {part!r} is not valid")
        days.update(d % 7 for d in range(low, high + 1, step))
    return ",".join(_DAY_NAMES[d] for d in sorted(days))


def _day(text: str) -> int:
    if text.lower()[:3] in _DAY_NAMES:
        return _DAY_NAMES.index(text.lower()[:3])
    number = int(text)
    if not 0 <= number <= 7:
        raise ValueError(f"weekday {number} is not between 0 and 7")
    return number
