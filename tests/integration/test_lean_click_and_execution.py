"""A gated action's click and execution in as few transactions as their guarantees allow: the click decided in
one (the approval locked, the vote, the decision, the capability spent on the execution it claims, and what the
card shows), no reads to settle the card, the execution booked in one (reading nothing the click read, and keeping
the outcome's memory when the memory store is in the same database), and the subscribers of ActionExecuted told
what they need in the event, so that those with nothing to do for a refund touch no SQL."""

from __future__ import annotations

import pytest

pytest.importorskip("langgraph", reason="the bench extra is not installed: pip install -e '.[bench]'")

from bench.gated_action import measure

ONE_TRANSACTION = ("click decided", "execution booked")
NOTHING_TO_DO_FOR_A_REFUND = (
    "ActionExecuted → Executions.report_execution",
    "ActionExecuted → Memories.remember_outcome",
    "ActionExecuted → ScheduledPublishing.confirm",
    "ActionExecuted → Planning.resume_after_grant",
    "ActionExecuted → Compensation.mark_compensated",
    "ActionExecuted → Snippets.propose_after_publish",
)


async def test_a_click_and_its_execution_take_one_transaction_per_durable_step(database_url: str) -> None:
    result = await measure(1, database_url, keep_sql=True)

    assert result.sql is not None
    steps = {step.name: step for step in result.steps}
    for name in ONE_TRANSACTION:
        # The App Home's redraw after the approval reads in the background, whichever step it falls in.
        homes = sum(s.startswith("SELECT home_viewer") for s in result.sql.get(name, []))
        assert steps[name].committed == 1, name
        assert steps[name].transactions - 1 <= homes, name
    settled = steps.get("card settled")
    assert settled is None or settled.statements == settled.transactions == 0
    for name in NOTHING_TO_DO_FOR_A_REFUND:
        assert steps[name].statements == steps[name].transactions == 0, name
    # No transaction of its own to claim the execution: the click claims it, nothing read again.
    assert "execution claimed" not in steps
    clicked = [s.split()[:3] for s in _ours(result.sql["click decided"])]
    # The approval locked with its action, run, intent and agent's pause; the vote; the compare-and-set; the
    # action and the run moved on; the capability minted spent; the key claimed; the decision.
    expected = [
        ["SELECT", "approval.id,", "approval.action_id,"],
        ["INSERT", "INTO", "approval_vote"],
        ["UPDATE", "approval", "SET"],
        ["UPDATE", "proposed_action", "SET"],
        ["UPDATE", "run", "SET"],
        ["INSERT", "INTO", "capability"],
        ["INSERT", "INTO", "execution"],
        ["INSERT", "INTO", "decision"],
    ]
    if database_url.startswith("postgresql"):
        # There the approval is locked alone before it is read. The action is not read back for its audit entry:
        # its UPDATE returns its row.
        expected.insert(0, ["SELECT", "approval.id,", "approval.action_id,"])
    assert clicked == expected
    booked = _ours(result.sql["execution booked"])
    # Written, nothing read: the outcome's memory (first, so that a write of it that fails is rolled back alone),
    # the execution, its attempt, its action, its run.
    assert [s.split()[:3] for s in booked] == [
        ["INSERT", "INTO", "memory"],
        ["UPDATE", "execution", "SET"],
        ["INSERT", "INTO", "execution_attempt"],
        ["UPDATE", "proposed_action", "SET"],
        ["UPDATE", "run", "SET"],
    ]


def _ours(statements: list[str]) -> list[str]:
    """A step's statements without the App Home's background reads and the audit chain's (counted apart)."""
    return [
        s
        for s in statements
        if not s.startswith(("SELECT home_viewer", "SELECT audit_entry", "INSERT INTO audit_entry"))
        and "advisory" not in s
    ]
