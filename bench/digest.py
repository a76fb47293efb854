"""The digest and `aios cost` over 1,000,000 model calls (SQLite by default, PostgreSQL with --postgres URL).

    .venv/bin/python -m bench.digest [--rows 1000000] [--repeat 5] [--postgres postgresql+asyncpg://…]

The store is filled in bulk. The model calls are spread over the 60 days before now across 6 agents, 4 models,
3 teams, 40 requesters and 5 outcomes (about 6 % errors); one intent per 10 calls, whose first call is the
dispatcher's (no run) and the others its run's. Each run has one action and its policy decision (2 % denied),
executions (3 % failed), 1 % an escalation to people; there are incidents, 40 pending approvals and
budget accounts for today and this month. Then `build_digest` (what `aios digest` and the scheduled post call)
is timed over the last day, 7 days and 30 days, and `cost_report` (`aios cost`, `/aios cost`) for today, this
week and this month: the median of ``--repeat`` runs each, after one warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

from sqlalchemy import insert

from bot.cost import cost_report
from bot.digest import build_digest
from bot.logs import configure_logging
from policies.model import Budget
from storage.engine import create_engine
from storage.migrate import upgrade_to_head
from storage.records import (
    Approval,
    BudgetAccount,
    Decision,
    Escalation,
    Execution,
    Incident,
    Intent,
    LlmCall,
    ProposedAction,
    Run,
    utcnow,
)
from storage.unit_of_work import UnitOfWorkFactory

CHUNK = 20_000
SPAN = timedelta(days=60)
CALLS_PER_INTENT = 10
AGENTS = ("returns", "content", "social", "support", "finance", "ops")
MODELS = ("claude-sonnet-4-6", "claude-haiku-4-5", "claude-opus-4-1", "claude-sonnet-4-5")
TEAMS = ("T0SHOP", "T0BLOG", "T0OPS")
OUTCOMES = ("ok",) * 94 + ("overloaded",) * 3 + ("rate_limited",) * 1 + ("timeout",) * 1 + ("api_error",)
PENDING_APPROVALS = 40
BUDGETS = [
    Budget(id=f"{agent}-daily", scope="agent", match=agent, limit_usd=1.0 + i, warn_at=0.5)
    for i, agent in enumerate(AGENTS)
] + [Budget(id="team-monthly", scope="team", period="month", limit_usd=500.0)]


def _call_rows(
    first: int, last: int, intents: int, now: datetime, rng: random.Random
) -> list[dict[str, Any]]:
    """Calls ``first``..``last`` (1-based): the n-th intent's calls, oldest intents first."""
    rows = []
    for i in range(first, last + 1):
        intent = (i - 1) // CALLS_PER_INTENT + 1
        dispatch = (i - 1) % CALLS_PER_INTENT == 0
        outcome = rng.choice(OUTCOMES)
        tokens_in = rng.randint(200, 6000)
        tokens_out = rng.randint(20, 900)
        rows.append(
            {
                "id": i,
                "intent_id": intent,
                "run_id": None if dispatch else intent,
                "agent": "dispatcher" if dispatch else AGENTS[intent % len(AGENTS)],
                "requester": f"U0{intent % 40:06d}",
                "channel": f"C0{intent % 12:06d}",
                "team_id": TEAMS[intent % len(TEAMS)],
                "model": MODELS[1] if dispatch else MODELS[intent % 7 % len(MODELS)],
                "role": "dispatch" if dispatch else "agent",
                "input_tokens": tokens_in,
                "output_tokens": tokens_out if outcome == "ok" else 0,
                "cache_creation_tokens": rng.choice((0, 0, 0, 1024)),
                "cache_read_tokens": rng.choice((0, 0, 2048)),
                "cost_usd": (tokens_in * 3 + tokens_out * 15) / 1e6 if outcome == "ok" else 0.0,
                "latency_ms": rng.uniform(300, 9000),
                "outcome": outcome,
                "error": None if outcome == "ok" else f"the API answered {outcome}",
                "created_at": _moment(i, intents * CALLS_PER_INTENT, now),
            }
        )
    return rows


def _moment(i: int, total: int, now: datetime) -> datetime:
    """Evenly over the span, the newest a second before now."""
    return now - timedelta(seconds=1) - SPAN * (1 - i / total)


def _intent_rows(first: int, last: int, total: int, now: datetime) -> dict[type[Any], list[dict[str, Any]]]:
    """Intents ``first``..``last`` with their run, action, policy decision and execution, plus escalations."""
    rows: dict[type[Any], list[dict[str, Any]]] = {
        Intent: [],
        Run: [],
        ProposedAction: [],
        Decision: [],
        Execution: [],
        Escalation: [],
    }
    for n in range(first, last + 1):
        at = _moment(n * CALLS_PER_INTENT, total * CALLS_PER_INTENT, now)
        denied, failed, escalated = n % 50 == 0, n % 33 == 0, n % 100 == 1
        status = "denied" if denied else "failed" if failed else "escalated" if escalated else "completed"
        agent = AGENTS[n % len(AGENTS)]
        rows[Intent].append(
            {"id": n, "source": "slash", "team_id": TEAMS[n % len(TEAMS)], "channel": f"C0{n % 12:06d}"}
            | {"user": f"U0{n % 40:06d}", "text": "refund order 1002, $20, late", "status": "done"}
            | {"created_at": at}
        )
        rows[Run].append(
            {"id": n, "intent_id": n, "agent": agent, "status": status, "memories_used": []}
            | {"created_at": at, "updated_at": at + timedelta(seconds=20)}
        )
        rows[ProposedAction].append(
            {"id": n, "run_id": n, "name": "shop.refund", "params": {"order_id": 1002, "amount": 20.0}}
            | {"status": "denied" if denied else "failed" if failed else "executed", "created_at": at}
        )
        rows[Decision].append(
            {"id": n, "action_id": n, "kind": "policy", "verdict": "deny" if denied else "allow"}
            | {"rule_id": "small-refunds-are-fine", "actor": "policy", "created_at": at}
        )
        if not denied:
            rows[Execution].append(
                {"id": n, "action_id": n, "idempotency_key": f"k{n}", "result": {}}
                | {"status": "failed" if failed else "succeeded", "started_at": at + timedelta(seconds=10)}
                | {"error": "the shop refused the refund" if failed else None}
            )
        if escalated:
            rows[Escalation].append(
                {"id": n, "run_id": n, "agent": agent, "reason": "unclear", "question": "Which order?"}
                | {"asked": [], "channel": f"C0{n % 12:06d}", "created_at": at}
                | {"status": ("open", "answered", "taken_over")[n // 100 % 3]}
            )
    return rows


async def fill(url: str, calls: int, now: datetime) -> None:
    """``calls`` model calls and the records around them, in bulk."""
    engine = create_engine(url)
    await upgrade_to_head(engine)
    rng = random.Random(7)
    intents = max(calls // CALLS_PER_INTENT, 1)
    calls = intents * CALLS_PER_INTENT
    per_chunk = CHUNK // CALLS_PER_INTENT
    for first in range(1, intents + 1, per_chunk):
        last = min(first + per_chunk - 1, intents)
        async with engine.begin() as connection:
            for record, rows in _intent_rows(first, last, intents, now).items():
                if rows:
                    await connection.execute(insert(record), rows)
            await connection.execute(
                insert(LlmCall),
                _call_rows((first - 1) * CALLS_PER_INTENT + 1, last * CALLS_PER_INTENT, intents, now, rng),
            )
    async with engine.begin() as connection:
        await connection.execute(
            insert(Incident),
            [
                {"kind": ("memory", "slack", "scheduler")[n % 3], "detail": "degraded"}
                | {"created_at": now - SPAN * (n / 300)}
                for n in range(1, 300)
            ],
        )
        newest = intents - 1  # actions of recent runs, still waiting for a person
        await connection.execute(
            insert(Approval),
            [
                {"action_id": newest - n, "decision_id": newest - n, "status": "pending"}
                | {"approver_roles": ["manager"], "requester": "U0000001", "channel": "C0000001"}
                | {"escalate_to": [], "created_at": now - timedelta(hours=n)}
                for n in range(PENDING_APPROVALS)
            ],
        )
        await connection.execute(
            insert(BudgetAccount),
            [
                {"key": f"{b.id}:{b.match}:{period}", "budget_id": b.id, "scope_value": b.match}
                | {"period": period, "limit_usd": b.limit_usd, "spent_usd": b.limit_usd * share}
                | {"updated_at": now}
                for b, period, share in [
                    *((b, f"{now:%Y-%m-%d}", 0.3 + i / 10) for i, b in enumerate(BUDGETS[:-1])),
                    (BUDGETS[-1], f"{now:%Y-%m}", 0.7),
                ]
            ],
        )
    if engine.dialect.name == "postgresql":
        # What autovacuum would have done by the time a digest runs: statistics, and the visibility map that
        # lets the indexes answer without visiting the table.
        async with engine.connect() as connection:
            autocommit = await connection.execution_options(isolation_level="AUTOCOMMIT")
            await autocommit.exec_driver_sql("VACUUM ANALYZE")
    await engine.dispose()


async def timed(work: Callable[[], Awaitable[object]], repeat: int) -> tuple[float, float]:
    """The median wall and CPU seconds of ``repeat`` runs, after a warm-up (connections, statement caches, the
    pages read from disk). CPU time counts the driver's thread too, and is what a busy machine changes least."""
    await work()
    walls, cpus = [], []
    for _ in range(repeat):
        wall, cpu = time.perf_counter(), time.process_time()
        await work()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return statistics.median(walls), statistics.median(cpus)


async def measure(url: str, now: datetime, repeat: int) -> None:
    engine = create_engine(url)
    units = UnitOfWorkFactory.for_engine(engine)
    try:
        for label, days in (("1 day", 1), ("7 days", 7), ("30 days", 30)):
            digest_of = partial(build_digest, units, now, BUDGETS, timedelta(days=days))
            digest = await digest_of()
            wall, cpu = await timed(digest_of, repeat)
            print(
                f"digest over the last {label:<7}: {wall * 1000:7.1f} ms (CPU {cpu * 1000:6.1f} ms)  "
                f"{sum(row.calls for row in digest.by_agent):,} calls, ${digest.total_usd:,.2f}, "
                f"{digest.completed_runs:,} runs completed, {sum(digest.errors.values()):,} errors"
            )
        for period in ("today", "week", "month"):
            report_of = partial(cost_report, units, period, now)
            report = await report_of()
            wall, cpu = await timed(report_of, repeat)
            print(
                f"aios cost {period:<5}           : {wall * 1000:7.1f} ms (CPU {cpu * 1000:6.1f} ms)  "
                f"{report.total.calls:,} calls, ${report.total.cost_usd:,.2f}"
            )
    finally:
        await engine.dispose()


@asynccontextmanager
async def sqlite_url(folder: str) -> AsyncIterator[str]:
    yield f"sqlite+aiosqlite:///{Path(folder) / 'digest.db'}"


async def main() -> None:
    configure_logging(json=False, level=40)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="model calls (llm_call rows)")
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each, after a warm-up")
    parser.add_argument(
        "--postgres", metavar="URL", help="a PostgreSQL database to create a throwaway one from"
    )
    args = parser.parse_args()
    now = utcnow()
    with tempfile.TemporaryDirectory() as folder:
        if args.postgres:
            from tests.conftest import throwaway_postgres

            store: Any = throwaway_postgres(args.postgres)
        else:
            store = sqlite_url(folder)
        async with store as url:
            started = time.perf_counter()
            await fill(url, args.rows, now)
            print(
                f"filled {args.rows:,} model calls and their records in {time.perf_counter() - started:.0f} s"
            )
            await measure(url, now, args.repeat)


if __name__ == "__main__":
    asyncio.run(main())
