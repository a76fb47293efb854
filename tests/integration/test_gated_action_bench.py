"""The gated-action benchmark, run for two gated actions on each store so that it keeps working as the bot
changes: every step is metered, both sides finish, and a gated action takes no more transactions and statements
than it does today (times are not checked here: they belong to the benchmark)."""

from __future__ import annotations

import pytest

pytest.importorskip("langgraph", reason="the bench extra is not installed: pip install -e '.[bench]'")

from bench.gated_action import WARM_UP, measure


async def test_two_gated_actions_are_metered_step_by_step_beside_langgraph(database_url: str) -> None:
    result = await measure(2, database_url)

    steps = {step.name: step for step in result.steps}
    for name in ("intent stored", "judged, approval stored", "click decided", "execution booked"):
        assert steps[name].statements >= 1 and steps[name].committed >= 1, name
    assert "connector called" in steps and "ActionExecuted → Executions.report_execution" in steps
    total = result.total
    assert total.transactions == total.committed + total.rolled_back
    # Ceilings, not exact figures: a change that makes a gated action cheaper lowers them.
    most_statements = 30 if database_url.startswith("sqlite") else 32
    assert total.transactions <= 8 and total.statements <= most_statements, (
        total.transactions,
        total.statements,
    )
    assert total.statements > total.transactions
    assert result.anchor_checkpoints == 7  # plan, judge, the interrupt, its resume, execute, record
    assert result.anchor_transactions >= 1 and result.anchor_statements >= result.anchor_checkpoints
    assert (
        result.anchor_thread_calls >= result.anchor_statements
    )  # every statement goes to aiosqlite's thread
    if database_url.startswith("sqlite"):
        # Only what read-only transactions send goes to aiosqlite's thread: a transaction holding the write lock
        # runs on the event loop's.
        assert 0 < result.ours_thread_calls < total.statements
    else:
        assert result.ours_thread_calls == 0  # asyncpg has no thread
    assert len(result.ours_ms) == len(result.anchor_ms) == 2 and min(result.ours_ms + result.anchor_ms) > 0
    table = result.table()
    assert f"after {WARM_UP} warm-up runs" in table and "ours / LangGraph" in table


async def test_the_statements_of_one_run_are_kept_by_step_when_asked() -> None:
    result = await measure(1, keep_sql=True)

    assert result.sql is not None
    assert any(s.startswith("INSERT INTO intent") for s in result.sql["intent stored"])
    assert any(s.startswith("INSERT INTO execution ") for s in result.sql["click decided"])
    assert sum(len(s) for s in result.sql.values()) == sum(step.statements for step in result.steps)
