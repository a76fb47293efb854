"""`/aios cost` and `aios cost`: model spend by agent, by run and by requester for a period."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from rich.table import Table

from storage.repositories.budgets import CostRow
from storage.unit_of_work import UnitOfWorkFactory

PERIODS = ("today", "week", "month")
GROUPS = (("agent", "agent"), ("run", "run"), ("requester", "requester"))
TOP_RUNS = 10


class UnknownPeriodError(ValueError):
    """Not one of today, week, month."""


def period_start(period: str, now: datetime) -> datetime:
    """Calendar periods in UTC: today from midnight, week from Monday, month from the 1st."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == "today":
        return midnight
    if period == "week":
        return midnight - timedelta(days=midnight.weekday())
    if period == "month":
        return midnight.replace(day=1)
    raise UnknownPeriodError(f"{period!r} is not a period; use one of {', '.join(PERIODS)}")


@dataclass(frozen=True)
class CostReport:
    period: str
    since: datetime
    groups: dict[str, list[CostRow]]

    @property
    def total(self) -> CostRow:
        rows = self.groups["agent"]
        return CostRow(
            "total",
            sum(r.calls for r in rows),
            sum(r.input_tokens for r in rows),
            sum(r.output_tokens for r in rows),
            sum(r.cache_write_tokens for r in rows),
            sum(r.cache_read_tokens for r in rows),
            sum(r.cost_usd for r in rows),
            sum(r.failures for r in rows),
        )


async def cost_report(units: UnitOfWorkFactory, period: str, now: datetime) -> CostReport:
    since = period_start(period, now)
    async with units.read() as uow:
        groups = {
            name: await uow.budgets.llm_costs(column, since, limit=TOP_RUNS if name == "run" else None)
            for name, column in GROUPS
        }
    groups["run"] = [
        CostRow(f"R-{r.key}" if r.key != "-" else "(dispatch)", *_values(r)) for r in groups["run"][:TOP_RUNS]
    ]
    return CostReport(period, since, groups)


def _values(row: CostRow) -> tuple[int, int, int, int, int, float, int]:
    return (
        row.calls,
        row.input_tokens,
        row.output_tokens,
        row.cache_write_tokens,
        row.cache_read_tokens,
        row.cost_usd,
        row.failures,
    )


HEADERS = ("calls", "in", "out", "cache w", "cache r", "USD", "failed")


def _cells(row: CostRow) -> list[str]:
    return [
        str(row.calls),
        f"{row.input_tokens:,}",
        f"{row.output_tokens:,}",
        f"{row.cache_write_tokens:,}",
        f"{row.cache_read_tokens:,}",
        f"{row.cost_usd:.4f}",
        str(row.failures),
    ]


def cost_text(report: CostReport) -> str:
    """Slack mrkdwn: fixed-width tables in code blocks."""
    if not report.groups["agent"]:
        return f"No model calls {report.period} (since {report.since:%Y-%m-%d %H:%M} UTC)."
    lines = [
        f"*Model spend {report.period}* (since {report.since:%Y-%m-%d %H:%M} UTC): "
        f"${report.total.cost_usd:.4f} over {report.total.calls} calls, {report.total.failures} failed"
    ]
    for name, _ in GROUPS:
        rows = report.groups[name]
        width = max(len(name), *(len(r.key) for r in rows))
        table = [f"{name:<{width}} " + " ".join(f"{h:>9}" for h in HEADERS)]
        table += [f"{r.key:<{width}} " + " ".join(f"{c:>9}" for c in _cells(r)) for r in rows]
        lines.append("```" + "\n".join(table) + "```")
    return "\n".join(lines)


def cost_tables(report: CostReport) -> list[Table]:
    tables = []
    for name, _ in GROUPS:
        table = Table(
            title=f"Model spend by {name}, {report.period} (since {report.since:%Y-%m-%d %H:%M} UTC)"
        )
        table.add_column(name)
        for header in HEADERS:
            table.add_column(header, justify="right")
        for row in [*report.groups[name], report.total]:
            table.add_row(row.key, *_cells(row), style="bold" if row.key == "total" else None)
        tables.append(table)
    return tables
