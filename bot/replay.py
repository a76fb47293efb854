"""What-if replay over the records: policy decisions read a batch at a time and judged again under another
policy, and the result as text, JSON or Block Kit. Reads only the SQL store: no model, no connector.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from policies.engine import Policy
from policies.replay import Change, RecordedDecision, Replayed, Summary, meaning, money_of, replay
from storage.ids import format_id
from storage.unit_of_work import UnitOfWorkFactory

BATCH = 2000
ARROW = {Change.SAME: "=", Change.STRICTER: "▲", Change.LOOSER: "▼", Change.DIFFERENT: "≠"}
PARAMS_SHOWN_MAX = 200
RUNS_LISTED = 20


@dataclass(frozen=True)
class Scope:
    """Which decisions: one run's, or every one since a time."""

    run_id: int | None = None
    since: datetime | None = None

    def describe(self) -> str:
        if self.run_id is not None:
            return format_id("R", self.run_id)
        assert self.since is not None
        return f"since {self.since:%Y-%m-%d %H:%M UTC}"


@dataclass
class _RunTotals:
    """Each run's totals so far, for decisions recorded before facts were kept (rebuilt from its actions)."""

    by_run: dict[int, dict[str, float]] = field(default_factory=dict)

    def add(self, run_id: int, name: str, params: Mapping[str, Any]) -> dict[str, float]:
        totals = self.by_run.setdefault(run_id, {})
        amount = params.get("amount")
        totals[name] = totals.get(name, 0.0) + (float(amount) if isinstance(amount, int | float) else 0.0)
        return dict(totals)


async def count(units: UnitOfWorkFactory, scope: Scope) -> int:
    async with units() as uow:
        return await uow.replay.count_policy_decisions(run_id=scope.run_id, since=scope.since)


async def replay_records(
    units: UnitOfWorkFactory, policy: Policy, scope: Scope, *, batch: int = BATCH
) -> AsyncIterator[Replayed]:
    """Every policy decision in scope, oldest first, judged again under ``policy``; one batch in memory."""
    after, rebuilt = 0, _RunTotals()
    while True:
        # A short read per batch: a writer is never kept waiting for the whole replay.
        async with units() as uow:
            rows = await uow.replay.policy_decisions(
                after=after, limit=batch, run_id=scope.run_id, since=scope.since
            )
        for row in rows:
            totals = rebuilt.add(row.run_id, row.name, row.params) if row.facts is None else {}
            yield replay(
                policy,
                RecordedDecision(
                    decision_id=row.decision_id,
                    action_id=row.action_id,
                    run_id=row.run_id,
                    name=row.name,
                    params=row.params,
                    verdict=row.verdict,
                    rule_id=row.rule_id,
                    policy_hash=row.policy_hash,
                    approvers=tuple(row.approvers or ()),
                    facts=row.facts,
                    requester=row.requester,
                    run_totals=totals,
                ),
            )
        if len(rows) < batch:
            return
        after = rows[-1].decision_id


def diff_line(replayed: Replayed) -> str:
    """One action's change as plain text: what was recorded → what the other policy says."""
    recorded, new = replayed.recorded, replayed.new
    params = json.dumps(dict(recorded.params), sort_keys=True)
    if len(params) > PARAMS_SHOWN_MAX:
        params = params[: PARAMS_SHOWN_MAX - 1] + "…"
    money = money_of(recorded.params)
    line = (
        f"{ARROW[replayed.change]} {format_id('A', recorded.action_id)} ({format_id('R', recorded.run_id)}) "
        f"{recorded.name}{f' ${money:,.2f}' if money else ''} {params}: "
        f"{recorded.verdict} by {recorded.rule_id} ({meaning(recorded.verdict, recorded.approvers)})"
    )
    if replayed.change is Change.SAME:
        line += " — unchanged"
    else:
        line += f" → {new.verdict} by {new.rule_id} ({meaning(new.verdict, new.approver_roles)}) — {replayed.change}"
    if replayed.partial:
        line += " [facts partly reconstructed]"
    return line


@dataclass
class ReplayReport:
    """What a replay found: the summary, and the lines of the actions to show (changed ones, or all of a run)."""

    policy: Policy
    scope: Scope
    summary: Summary = field(default_factory=Summary)
    shown: list[Replayed] = field(default_factory=list)

    def take(self, replayed: Replayed, keep: int) -> None:
        self.summary.add(replayed)
        show_all = self.scope.run_id is not None
        if (show_all or replayed.change is not Change.SAME) and len(self.shown) < keep:
            self.shown.append(replayed)

    def heading(self) -> str:
        return (
            f"Replay of {self.scope.describe()} under {self.policy.source} (policy {self.policy.hash[:12]})"
        )

    def text_lines(self) -> list[str]:
        lines = [self.heading(), *self.summary_lines()]
        if self.shown:
            lines.append("")
            lines += [diff_line(replayed) for replayed in self.shown]
        hidden = self.listed_total() - len(self.shown)
        if hidden > 0:
            lines.append(f"…and {hidden} more")
        return lines

    def summary_lines(self) -> list[str]:
        """The summary, and for a window the runs it would change (the first of them)."""
        lines = self.summary.lines()
        affected = sorted(self.summary.runs_affected)
        if self.scope.run_id is None and affected:
            listed = ", ".join(format_id("R", run_id) for run_id in affected[:RUNS_LISTED])
            more = f" and {len(affected) - RUNS_LISTED} more" if len(affected) > RUNS_LISTED else ""
            lines.append(f"Runs that would change: {listed}{more}.")
        return lines

    def as_json(self) -> dict[str, Any]:
        from policies.replay import as_json

        return {
            "scope": {
                "run": format_id("R", self.scope.run_id) if self.scope.run_id is not None else None,
                "since": self.scope.since.isoformat() if self.scope.since else None,
            },
            "policy": {"source": self.policy.source, "hash": self.policy.hash},
            "summary": self.summary.as_json(),
            "actions": [as_json(replayed) for replayed in self.shown],
            "actions_not_listed": max(0, self.listed_total() - len(self.shown)),
        }

    def listed_total(self) -> int:
        return self.summary.actions if self.scope.run_id is not None else self.summary.changed


async def build_report(
    units: UnitOfWorkFactory,
    policy: Policy,
    scope: Scope,
    *,
    keep: int,
    progress: Callable[[int], None] | None = None,
) -> ReplayReport:
    """Replay everything in scope, keeping at most ``keep`` actions to list (the summary counts them all)."""
    report = ReplayReport(policy, scope)
    async for replayed in replay_records(units, policy, scope):
        report.take(replayed, keep)
        if progress is not None:
            progress(1)
    return report


BLOCKS_MAX = 50  # Slack's limit per message
SECTION_MAX = 3000
HEADER_MAX = 150


def slack_message(report: ReplayReport) -> tuple[str, list[dict[str, Any]]]:
    """The report as a Block Kit message within Slack's limits, and the same as its text fallback (shortened)."""
    from slack_sdk.models.blocks import HeaderBlock, MarkdownTextObject, SectionBlock

    from runtime.mrkdwn import escape, truncate

    summary = "\n".join(escape(line) for line in report.summary_lines())
    blocks: list[Any] = [
        HeaderBlock(text=truncate(report.heading(), HEADER_MAX)),
        SectionBlock(text=MarkdownTextObject(text=truncate(summary, SECTION_MAX))),
    ]
    lines = [escape(diff_line(replayed)) for replayed in report.shown]
    hidden = report.listed_total() - len(lines)
    sections: list[list[str]] = []  # the lines packed greedily into sections of at most SECTION_MAX
    for line in lines:
        line = truncate(line, SECTION_MAX)
        if not sections or len("\n".join([*sections[-1], line])) > SECTION_MAX:
            sections.append([])
        sections[-1].append(line)
    room = BLOCKS_MAX - len(blocks) - 1  # one block kept for "…and N more"
    for section in sections[:room]:
        blocks.append(SectionBlock(text=MarkdownTextObject(text="\n".join(section))))
    hidden += sum(len(section) for section in sections[room:])
    if hidden > 0:
        blocks.append(SectionBlock(text=MarkdownTextObject(text=f"…and {hidden} more")))
    text = truncate("\n".join([escape(report.heading()), summary, *lines]), SECTION_MAX)
    return text, [block.to_dict() for block in blocks]
