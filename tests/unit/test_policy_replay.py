"""A recorded decision judged again under another policy: with the facts of the time, classified by direction."""

from __future__ import annotations

from typing import Any

import pytest

from policies.engine import Policy
from policies.replay import Change, Facts, RecordedDecision, Summary, classify, meaning, replay

RECORDED_UNDER = Policy.from_text("""
version: 1
roles:
  manager: [U0MANAGER]
rules:
  - id: refunds-over-100-need-a-manager
    when: action.name == "shop.refund" && run.totals["shop.refund"] > 100.0
    verdict: require_approval
    approvers: [manager]
  - id: small-refunds-are-fine
    when: action.name == "shop.refund"
    verdict: allow
default: require_approval
default_approvers: [manager]
""")

CANDIDATE = Policy.from_text("""
version: 1
roles:
  manager: [U0MANAGER]
  finance: [U0FIN]
  support: [S0SUPPORT]
budgets:
  - id: team
    scope: team
    limit_usd: 10
    approvers: [finance]
rules:
  - id: no-refunds-past-1000-today
    when: action.name == "shop.refund" && requester.today["shop.refund"] + run.totals["shop.refund"] > 1000.0
    verdict: deny
  - id: support-refunds-up-to-300
    when: action.name == "shop.refund" && "support" in requester.roles && run.totals["shop.refund"] <= 300.0
    verdict: allow
  - id: refunds-on-refunded-orders-need-finance
    when: action.name == "shop.refund" && order.refunded > 0.0
    verdict: require_approval
    approvers: [finance]
  - id: refunds-over-50-need-a-manager
    when: action.name == "shop.refund" && run.totals["shop.refund"] > 50.0
    verdict: require_approval
    approvers: [manager]
  - id: small-refunds-are-fine
    when: action.name == "shop.refund"
    verdict: allow
default: require_approval
default_approvers: [manager]
""")


def recorded(
    amount: float,
    *,
    facts: Facts | None = None,
    verdict: str = "allow",
    rule: str = "small-refunds-are-fine",
    approvers: tuple[str, ...] = (),
    name: str = "shop.refund",
    params: dict[str, Any] | None = None,
    run_totals: dict[str, float] | None = None,
) -> RecordedDecision:
    return RecordedDecision(
        decision_id=1,
        action_id=1,
        run_id=7,
        name=name,
        params=params if params is not None else {"order_id": 1001, "amount": amount, "reason": "broken"},
        verdict=verdict,
        rule_id=rule,
        policy_hash=RECORDED_UNDER.hash,
        approvers=approvers,
        facts=facts.as_json() if facts is not None else None,
        requester="U0ALICE",
        run_totals=run_totals or {},
    )


def test_the_same_policy_gives_the_same_verdict() -> None:
    facts = Facts("U0ALICE", run_totals={"shop.refund": 40.0})
    result = replay(RECORDED_UNDER, recorded(40, facts=facts))
    assert (result.change, result.new.rule_id, result.partial) == (
        Change.SAME,
        "small-refunds-are-fine",
        False,
    )


def test_run_totals_as_recorded_decide_not_the_single_amount() -> None:
    """$40 on its own is small, but the run had moved $80 in refunds: over 50 under the candidate."""
    result = replay(CANDIDATE, recorded(40, facts=Facts("U0ALICE", run_totals={"shop.refund": 80.0})))
    assert result.change is Change.STRICTER
    assert (result.new.verdict, result.new.approver_roles) == ("require_approval", ("manager",))


def test_history_as_recorded_decides() -> None:
    refunded_before = Facts("U0ALICE", run_totals={"shop.refund": 20.0}, order_refunded=30.0)
    result = replay(CANDIDATE, recorded(20, facts=refunded_before))
    assert (result.new.rule_id, result.new.approver_roles) == (
        "refunds-on-refunded-orders-need-finance",
        ("finance",),
    )

    busy_day = Facts("U0ALICE", run_totals={"shop.refund": 20.0}, requester_today={"shop.refund": 990.0})
    assert replay(CANDIDATE, recorded(20, facts=busy_day)).new.verdict == "deny"


def test_roles_are_resolved_by_the_candidate_from_the_recorded_group_membership() -> None:
    in_support = Facts("U0ALICE", groups=("S0SUPPORT",), run_totals={"shop.refund": 250.0})
    result = replay(
        CANDIDATE,
        recorded(
            250,
            facts=in_support,
            verdict="require_approval",
            rule="refunds-over-100-need-a-manager",
            approvers=("manager",),
        ),
    )
    assert (result.change, result.new.rule_id) == (Change.LOOSER, "support-refunds-up-to-300")


def test_without_recorded_facts_the_rebuilt_ones_are_used_and_the_replay_says_so() -> None:
    result = replay(CANDIDATE, recorded(40, run_totals={"shop.refund": 40.0}))
    assert (result.partial, result.change) == (True, Change.SAME)
    assert replay(CANDIDATE, recorded(40, run_totals={"shop.refund": 90.0})).change is Change.STRICTER


def test_a_budget_grant_is_judged_by_the_budget_approvers() -> None:
    grant = recorded(
        0,
        name="budget.grant",
        params={"budget_id": "team", "account": "team:T1:2026-11", "amount_usd": 5.0},
        verdict="require_approval",
        rule="budget:team",
        approvers=("manager",),
        facts=Facts("U0ALICE"),
    )
    result = replay(CANDIDATE, grant)
    assert (result.change, result.new.approver_roles, result.money) == (Change.DIFFERENT, ("finance",), 5.0)
    assert replay(RECORDED_UNDER, grant).new.verdict == "deny"  # no such budget there


@pytest.mark.parametrize(
    ("before", "after", "change"),
    [
        ("allow", "require_approval", Change.STRICTER),
        ("require_approval", "deny", Change.STRICTER),
        ("allow", "deny", Change.STRICTER),
        ("deny", "allow", Change.LOOSER),
        ("require_approval", "allow", Change.LOOSER),
    ],
)
def test_directions(before: str, after: str, change: Change) -> None:
    policy = Policy.from_text(
        f"""
version: 1
roles: {{manager: [U0MANAGER]}}
rules:
  - id: r
    when: "true"
    verdict: {after}
default: deny
default_approvers: [manager]
"""
    )
    new = policy.evaluate("x.y", {}, "U0ALICE")
    assert classify(before, "r", ("manager",), new) is change


def test_the_same_verdict_by_another_rule_or_for_other_approvers_is_a_difference() -> None:
    new = CANDIDATE.evaluate("shop.refund", {"amount": 80.0}, "U0ALICE")  # manager, by refunds-over-50
    assert (
        classify("require_approval", "refunds-over-100-need-a-manager", ("manager",), new) is Change.DIFFERENT
    )
    assert (
        classify("require_approval", "refunds-over-50-need-a-manager", ("finance",), new) is Change.DIFFERENT
    )
    assert classify("require_approval", "refunds-over-50-need-a-manager", ("manager",), new) is Change.SAME
    # A record without its approval request does not say who was asked: only the rule is compared.
    assert classify("require_approval", "refunds-over-50-need-a-manager", (), new) is Change.SAME


def test_the_summary_counts_directions_and_money_per_action_and_outcome() -> None:
    summary = Summary()
    for amount in (60, 70, 80):
        summary.add(
            replay(CANDIDATE, recorded(amount, facts=Facts("U0ALICE", run_totals={"shop.refund": amount})))
        )
    summary.add(replay(CANDIDATE, recorded(20, facts=Facts("U0ALICE", run_totals={"shop.refund": 20.0}))))
    assert (summary.actions, summary.changed, summary.by_change[Change.STRICTER]) == (4, 3, 3)
    assert summary.lines()[1] == (
        "3 × shop.refund totalling $210.00 would have needed approval by manager (stricter)"
    )
    document = summary.as_json()
    assert document["groups"] == [
        {
            "action": "shop.refund",
            "change": "stricter",
            "verdict": "require_approval",
            "approvers": ["manager"],
            "count": 3,
            "money": 210.0,
        }
    ]
    assert document["runs_affected_ids"] == [7]


def test_meaning_in_words() -> None:
    assert meaning("allow", ()) == "allowed without approval"
    assert meaning("deny", ()) == "denied"
    assert meaning("require_approval", ("manager", "finance")) == "needs approval by manager or finance"
