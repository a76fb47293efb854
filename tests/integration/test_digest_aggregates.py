"""The digest's and `aios cost`'s sums, made in SQL on the period indexes, agree with a plain sum of the same
model calls; and on SQLite each of their reads of the calls is answered by an index alone."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, event, insert
from sqlmodel import func, select

from bot.digest import TOP_WORKFLOWS, build_digest
from storage.engine import create_engine
from storage.migrate import upgrade_to_head
from storage.records import Intent, LlmCall, Run
from storage.repositories.budgets import CostRow
from storage.unit_of_work import UnitOfWorkFactory

UNTIL = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
RUNS = 8
BOUNDARIES = [timedelta(0), timedelta(days=-1), timedelta(days=-7), timedelta(microseconds=-1)]


@dataclass(frozen=True)
class Call:
    agent: str
    run: int | None
    requester: str
    model: str
    outcome: str
    input_tokens: int
    output_tokens: int
    cache_write: int
    cache_read: int
    micro_usd: int
    offset: timedelta  # from UNTIL

    @property
    def at(self) -> datetime:
        return UNTIL + self.offset

    def key(self, group_by: str) -> str:
        value = {"agent": self.agent, "run": self.run, "requester": self.requester, "model": self.model}[
            group_by
        ]
        return str(value) if value is not None else "-"


calls = st.builds(
    Call,
    agent=st.sampled_from(["returns", "content", "dispatcher", "Returns", "returns-2"]),
    run=st.one_of(st.none(), st.integers(1, RUNS)),
    requester=st.sampled_from(["U0ALICE", "U0BOB", "U0CAROL"]),
    model=st.sampled_from(["claude-sonnet-4-6", "claude-haiku-4-5"]),
    outcome=st.sampled_from(["ok", "ok", "ok", "overloaded", "timeout", "rate_limited"]),
    input_tokens=st.integers(0, 20_000),
    output_tokens=st.integers(0, 4_000),
    cache_write=st.integers(0, 3_000),
    cache_read=st.integers(0, 3_000),
    micro_usd=st.integers(0, 90_000),
    # Mostly within the last 8 days, and often exactly on a period's first or last moment or just past it.
    offset=st.one_of(
        st.sampled_from(BOUNDARIES),
        st.integers(-8 * 24 * 60, 60).map(lambda minutes: timedelta(minutes=minutes)),
    ),
)


def expected(rows: list[Call], group_by: str, since: datetime, until: datetime) -> dict[str, CostRow]:
    sums: dict[str, list[int]] = defaultdict(lambda: [0] * 7)
    for c in rows:
        if since <= c.at < until:
            total = sums[c.key(group_by)]
            for i, value in enumerate(
                (
                    1,
                    c.input_tokens,
                    c.output_tokens,
                    c.cache_write,
                    c.cache_read,
                    c.micro_usd,
                    c.outcome != "ok",
                )
            ):
                total[i] += int(value)
    return {key: CostRow(key, s[0], s[1], s[2], s[3], s[4], s[5] / 1e6, s[6]) for key, s in sums.items()}


def assert_costliest_first(got: list[CostRow], want: dict[str, CostRow], limit: int | None = None) -> None:
    """The costliest groups, each summed in full; among groups of equal cost any may come first."""
    for row in got:
        assert _same(row, want[row.key]), (row, want[row.key])
    costs = [row.cost_usd for row in got]
    assert costs == pytest.approx(sorted(costs, reverse=True))
    everyone = sorted((row.cost_usd for row in want.values()), reverse=True)
    assert costs == pytest.approx(everyone[:limit] if limit is not None else everyone)


def _same(got: CostRow, want: CostRow) -> bool:
    exact = (got.key, got.calls, got.input_tokens, got.output_tokens, got.cache_write_tokens)
    wanted = (want.key, want.calls, want.input_tokens, want.output_tokens, want.cache_write_tokens)
    return (
        exact == wanted
        and (got.cache_read_tokens, got.failures) == (want.cache_read_tokens, want.failures)
        and got.cost_usd == pytest.approx(want.cost_usd, abs=1e-9)
    )


async def store(units: UnitOfWorkFactory, rows: list[Call]) -> None:
    async with units() as uow:
        session = uow.session
        await session.exec(delete(LlmCall))
        if not (await session.exec(select(func.count()).select_from(Run))).one():
            session.add(Intent(id=1, source="console", channel="C0SHOP", user="U0ALICE", text="refunds"))
            await session.flush()
            session.add_all(Run(id=n, intent_id=1, agent="returns") for n in range(1, RUNS + 1))
            await session.flush()
        if rows:
            await session.exec(insert(LlmCall).values([_values(c) for c in rows]))
        await uow.commit()


def _values(c: Call) -> dict[str, Any]:
    return {
        "intent_id": 1,
        "run_id": c.run,
        "agent": c.agent,
        "requester": c.requester,
        "channel": "C0SHOP",
        "model": c.model,
        "role": "agent",
        "input_tokens": c.input_tokens,
        "output_tokens": c.output_tokens,
        "cache_creation_tokens": c.cache_write,
        "cache_read_tokens": c.cache_read,
        "cost_usd": c.micro_usd / 1e6,
        "outcome": c.outcome,
        "created_at": c.at,
    }


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=st.lists(calls, max_size=300), days=st.sampled_from([1, 7]))
async def test_the_digest_sums_what_a_plain_sum_of_the_calls_gives(
    units: UnitOfWorkFactory, rows: list[Call], days: int
) -> None:
    await store(units, rows)
    since = UNTIL - timedelta(days=days)

    digest = await build_digest(units, UNTIL, period=timedelta(days=days))

    assert_costliest_first(digest.by_agent, expected(rows, "agent", since, UNTIL))
    runs = expected(rows, "run", since, UNTIL)
    runs.pop("-", None)
    assert_costliest_first(digest.top_runs, runs, TOP_WORKFLOWS)
    errors: dict[str, int] = defaultdict(int)
    for c in rows:
        if c.outcome != "ok" and since <= c.at < UNTIL:
            errors[f"llm:{c.outcome}"] += 1
    assert {k: v for k, v in digest.errors.items() if k.startswith("llm:")} == errors


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(rows=st.lists(calls, max_size=300), limit=st.sampled_from([None, 1, 3, 10]))
async def test_cost_groups_sum_what_a_plain_sum_of_the_calls_gives(
    units: UnitOfWorkFactory, rows: list[Call], limit: int | None
) -> None:
    await store(units, rows)
    since = UNTIL - timedelta(days=7)
    async with units() as uow:
        for group_by in ("agent", "run", "requester", "model"):
            got = await uow.budgets.llm_costs(group_by, since, UNTIL, limit=limit)
            assert_costliest_first(got, expected(rows, group_by, since, UNTIL), limit)


@pytest.fixture
def sqlite_statements(tmp_path: Path) -> Iterator[tuple[str, list[tuple[str, Any]]]]:
    yield f"sqlite+aiosqlite:///{tmp_path}/plans.db", []


async def test_on_sqlite_every_read_of_the_calls_is_an_index_range_without_sorting_the_calls(
    sqlite_statements: tuple[str, list[tuple[str, Any]]],
) -> None:
    from bot.cost import cost_report

    url, statements = sqlite_statements
    engine = create_engine(url)
    await upgrade_to_head(engine)
    units = UnitOfWorkFactory.for_engine(engine)
    await store(units, [])

    def record(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
        if "FROM llm_call" in statement or "FROM run " in statement:
            statements.append((statement, parameters))

    event.listen(engine.sync_engine, "before_cursor_execute", record)
    try:
        await build_digest(units, UNTIL, period=timedelta(days=30))
        await cost_report(units, "month", UNTIL)
    finally:
        event.remove(engine.sync_engine, "before_cursor_execute", record)
    plans = {}
    try:
        async with engine.connect() as connection:
            for statement, parameters in statements:
                rows = await connection.exec_driver_sql(f"EXPLAIN QUERY PLAN {statement}", parameters)
                plans[" ".join(statement.split())] = [str(tuple(row)[3]) for row in rows]
    finally:
        await engine.dispose()

    agents = next(plan for sql, plan in plans.items() if "min(llm_call.agent)" in sql and "sum(" in sql)
    assert (
        "SEARCH llm_call USING COVERING INDEX ix_llm_call_agent_period (agent=? AND created_at>? AND created_at<?)"
        in (agents)
    )
    errors = next(plan for sql, plan in plans.items() if "min(llm_call.outcome)" in sql)
    assert any(
        "COVERING INDEX ix_llm_call_outcome_period (outcome=? AND created_at>?" in step for step in errors
    )
    completed = next(plan for sql, plan in plans.items() if "FROM run WHERE run.status" in sql)
    assert any("ix_run_status_updated_at (status=? AND updated_at>?" in step for step in completed)
    for sql, plan in plans.items():
        if "FROM llm_call" not in sql:
            continue
        reads = [step for step in plan if step.startswith(("SEARCH llm_call", "SCAN llm_call"))]
        assert reads and all("COVERING INDEX" in step for step in reads), (sql, plan)
        # Grouping by agent, outcome or a chosen run reads each group's range in index order; only the choice of
        # the costliest runs and the requesters (many keys, one sort of the period's index entries) sort.
        if "GROUP BY llm_call.agent" in sql or "GROUP BY llm_call.outcome" in sql:
            assert "USE TEMP B-TREE FOR GROUP BY" not in plan, (sql, plan)
