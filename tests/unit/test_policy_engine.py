from __future__ import annotations

from datetime import timedelta

import pytest

from policies.engine import Policy
from policies.errors import PolicyError
from policies.model import parse_duration

POLICY = """
version: 1
roles:
  manager: [U0MANAGER]
  editor: [U0EDITOR, S0EDITORS]
rules:
  - id: refunds-over-100-need-a-manager
    when: action.name == "shop.refund" && action.params.amount > 100.0
    verdict: require_approval
    approvers: [manager]
    forbid_self_approval: true
    timeout: 4h
    escalate_to: [manager]
  - id: small-refunds-are-fine
    when: action.name == "shop.refund"
    verdict: allow
  - id: never-email-competitors
    when: action.name == "email.send" && action.params.to.endsWith("@rival.example")
    verdict: deny
  - id: managers-may-email
    when: action.name == "email.send" && "manager" in requester.roles
    verdict: allow
default: require_approval
default_approvers: [manager]
"""


@pytest.fixture
def policy() -> Policy:
    return Policy.from_text(POLICY)


def test_require_approval_carries_the_rule_settings(policy: Policy) -> None:
    verdict = policy.evaluate("shop.refund", {"order_id": 1001, "amount": 250.0, "reason": "x"}, "U1")
    assert verdict.verdict == "require_approval"
    assert verdict.rule_id == "refunds-over-100-need-a-manager"
    assert verdict.approver_roles == ("manager",)
    assert verdict.forbid_self_approval is True
    assert verdict.timeout == timedelta(hours=4)
    assert verdict.escalate_to == ("manager",)
    assert verdict.policy_hash == policy.hash and len(policy.hash) == 64


def test_first_matching_rule_wins(policy: Policy) -> None:
    small = policy.evaluate("shop.refund", {"amount": 100.0}, "U1")
    assert (small.verdict, small.rule_id) == ("allow", "small-refunds-are-fine")
    assert small.approver_roles == ()


def test_deny(policy: Policy) -> None:
    verdict = policy.evaluate("email.send", {"to": "ceo@rival.example"}, "U0MANAGER")
    assert (verdict.verdict, verdict.rule_id) == ("deny", "never-email-competitors")


def test_conditions_see_the_requesters_roles(policy: Policy) -> None:
    assert policy.evaluate("email.send", {"to": "a@b.example"}, "U0MANAGER").verdict == "allow"
    assert policy.evaluate("email.send", {"to": "a@b.example"}, "U0NOBODY").rule_id == "default"


def test_no_match_falls_to_the_default_with_default_approvers(policy: Policy) -> None:
    verdict = policy.evaluate("cms.publish", {"slug": "x"}, "U1")
    assert (verdict.verdict, verdict.rule_id, verdict.approver_roles) == (
        "require_approval",
        "default",
        ("manager",),
    )


def test_a_condition_that_fails_to_evaluate_blocks_the_action(policy: Policy) -> None:
    verdict = policy.evaluate("shop.refund", {"order_id": 1001}, "U1")  # no amount
    assert verdict.verdict == "deny"
    assert verdict.rule_id == "refunds-over-100-need-a-manager"
    assert "could not be evaluated" in verdict.explanation


def test_a_condition_that_is_not_boolean_blocks_the_action() -> None:
    policy = Policy.from_text(
        POLICY.replace('action.name == "shop.refund" && action.params.amount > 100.0', "action.params.amount")
    )
    verdict = policy.evaluate("shop.refund", {"amount": 5.0}, "U1")
    assert verdict.verdict == "deny" and "not true or false" in verdict.explanation


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda t: t.replace(
                'action.name == "shop.refund" && action.params.amount > 100.0', "action.name =="
            ),
            "rule 'refunds-over-100-need-a-manager': its `when` is not valid CEL",
        ),
        (lambda t: t.replace("verdict: deny", "verdict: maybe"), "rule 'never-email-competitors' (verdict)"),
        (
            lambda t: t.replace("approvers: [manager]", "approvers: [boss]"),
            "rule 'refunds-over-100-need-a-manager' names role 'boss'",
        ),
        (lambda t: t.replace("timeout: 4h", "timeout: soon"), "'soon' is not a duration"),
        (lambda t: t.replace("version: 1", "version: 2"), "version"),
        (lambda t: t.replace("[U0MANAGER]", "[bob]"), "'bob', which is not a Slack user id"),
        (
            lambda t: t.replace("id: small-refunds-are-fine", "id: refunds-over-100-need-a-manager"),
            "appears twice",
        ),
        (lambda t: t.replace("default_approvers: [manager]", ""), "default_approvers must name"),
        (lambda t: t + "\nsurprise: true\n", "surprise"),
        (lambda t: "rules: [", "not valid YAML"),
        (lambda t: "- just\n- a list\n", "expected a mapping"),
    ],
)
def test_bad_policy_files_are_refused_with_the_rule_and_the_problem(change, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PolicyError) as raised:
        Policy.from_text(change(POLICY), "team-policy.yaml")
    assert message in str(raised.value)
    assert str(raised.value).startswith("team-policy.yaml")


def test_a_missing_policy_file_names_the_setting(tmp_path) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PolicyError, match="AIOS_POLICY_FILE"):
        Policy.from_file(tmp_path / "absent.yaml")


def test_the_packaged_default_policy_loads() -> None:
    policy = Policy.from_file()
    assert policy.evaluate("shop.refund", {"amount": 250.0}, "U1").verdict == "require_approval"
    assert policy.evaluate("shop.refund", {"amount": 40.0}, "U1").verdict == "allow"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30m", timedelta(minutes=30)),
        ("4h", timedelta(hours=4)),
        ("2d", timedelta(days=2)),
        (90, timedelta(seconds=90)),
    ],
)
def test_durations(text: str | int, expected: timedelta) -> None:
    assert parse_duration(text) == expected


def test_run_totals_see_a_large_refund_split_into_small_ones() -> None:
    policy = Policy.from_text(
        POLICY.replace(
            'action.name == "shop.refund" && action.params.amount > 100.0',
            'action.name == "shop.refund" && run.totals["shop.refund"] > 100.0',
        )
    )
    first = policy.evaluate("shop.refund", {"amount": 99.0}, "U1", {"shop.refund": 99.0})
    second = policy.evaluate("shop.refund", {"amount": 99.0}, "U1", {"shop.refund": 198.0})
    assert (first.verdict, second.verdict) == ("allow", "require_approval")
    alone = policy.evaluate("shop.refund", {"amount": 250.0}, "U1")  # no run: the action's own amount
    assert alone.verdict == "require_approval"


BUDGETS = """
budgets:
  - id: returns-daily
    scope: agent
    match: returns
    limit_usd: 2.5
    approvers: [manager]
  - id: team-monthly
    scope: team
    period: month
    limit_usd: 50
"""


def test_budgets_apply_by_scope_and_match() -> None:
    policy = Policy.from_text(POLICY + BUDGETS)
    assert [b.id for b in policy.budgets_for(agent="returns", channel="C1", team="T1")] == [
        "returns-daily",
        "team-monthly",
    ]
    assert [b.id for b in policy.budgets_for(agent="content", channel="C1", team="T1")] == ["team-monthly"]
    grant = policy.evaluate_budget_grant("team-monthly")
    assert (grant.verdict, grant.rule_id, grant.approver_roles) == (
        "require_approval",
        "budget:team-monthly",
        ("manager",),
    )
    assert policy.evaluate_budget_grant("nope").verdict == "deny"
    assert policy.budget("returns-daily").grant == 2.5  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            lambda t: t.replace("approvers: [manager]\n  - id: team", "approvers: [boss]\n  - id: team"),
            "names role 'boss'",
        ),
        (
            lambda t: t.replace("id: team-monthly", "id: returns-daily"),
            "budget 'returns-daily' appears twice",
        ),
        (lambda t: t.replace("id: team-monthly", "id: 'team:monthly'"), "String should match pattern"),
        (lambda t: t.replace("limit_usd: 50", "limit_usd: -1"), "greater than 0"),
        (lambda t: t.replace("scope: team", "scope: galaxy"), "'agent', 'channel' or 'team'"),
    ],
)
def test_bad_budgets_are_refused(change, message) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(PolicyError, match=message):
        Policy.from_text(change(POLICY + BUDGETS))
