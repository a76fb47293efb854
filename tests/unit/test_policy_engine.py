from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest

from connectors.registry import installed_action_params
from policies.engine import History, Policy
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
    assert not verdict.failed_condition  # a rule's own deny, not the engine's


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
    assert verdict.failed_condition
    assert not policy.evaluate("shop.refund", {"order_id": 1001, "amount": 20.0}, "U1").failed_condition


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


ACTION_PARAMS = {
    "shop.refund": ["amount", "order_id", "reason"],
    "email.send": ["body", "subject", "to"],
    "cms.publish": ["publish_at", "slug"],
}
REFUND_RULE = 'action.name == "shop.refund" && action.params.amount > 100.0'


@pytest.mark.parametrize(
    ("when", "message"),
    [
        ('actoin.name == "shop.refund"', "names `actoin`, which is not a fact a condition can use"),
        (
            'action.name == "shop.refund" && action.params.amuont > 100.0',
            "names `action.params.amuont`, which shop.refund does not have (did you mean `action.params.amount`?)",
        ),
        (
            'action.name == "shop.refund" && action.params.to == "a@b.c"',
            "`action.params.to`, which shop.refund",
        ),
        ('action.params["amuont"] > 100.0', "`action.params.amuont`, which any action does not have"),
        ('action.name == "shop.refnd"', 'names action "shop.refnd", which no connector offers'),
        ("requester.role == 'x'", "`requester.role`, which requester does not have"),
        ("run.total['shop.refund'] > 1.0", "`run.total`, which run does not have"),
    ],
)
def test_conditions_are_type_checked_at_load(when: str, message: str) -> None:
    with pytest.raises(PolicyError) as raised:
        Policy.from_text(POLICY.replace(REFUND_RULE, when), "team-policy.yaml", ACTION_PARAMS)
    assert str(raised.value).startswith(
        "team-policy.yaml: rule 'refunds-over-100-need-a-manager': its `when`"
    )
    assert message in str(raised.value)


@pytest.mark.parametrize(
    "when",
    [
        'action.name == "email.send" && action.params.to.endsWith("@x.example")',  # a method, not a field
        'action.name == "shop.refund" || action.params.slug == "x"',  # either action's fields
        'action.name in ["shop.refund", "email.send"] && "action.params.nope" != action.params.reason',
        "order.refunded < 1.0 && [1.0, 2.0].exists(x, x > 0.5) && requester.today['shop.refund'] > 0.0",
        "has(action.params.amount)",
    ],
)
def test_known_names_load(when: str) -> None:
    Policy.from_text(POLICY.replace(REFUND_RULE, when), "team-policy.yaml", ACTION_PARAMS)


def test_an_unquoted_true_gets_a_hint_to_quote_it() -> None:
    with pytest.raises(PolicyError, match=r'YAML read `when: true` as a boolean; quote it: when: "true"'):
        Policy.from_text(POLICY.replace(f"when: {REFUND_RULE}", "when: true"))
    assert Policy.from_text(POLICY.replace(f"when: {REFUND_RULE}", 'when: "true"')).evaluate(
        "cms.publish", {}, "U1"
    ).rule_id == ("refunds-over-100-need-a-manager")


def test_the_packaged_policy_names_only_what_the_installed_actions_have() -> None:
    Policy.from_file(None, installed_action_params())


def test_importing_the_engine_leaves_cel_for_when_a_policy_is_compiled() -> None:
    code = "import sys, policies.engine; print('cel' in sys.modules)"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "False"


SPLIT_POLICY = """
version: 1
roles:
  manager: [U0MANAGER]
rules:
  - id: refunds-over-100-need-a-manager
    when: >-
      action.name == "shop.refund" && (run.totals["shop.refund"] + requester.today["shop.refund"] > 100.0
      || order.refunded + action.params.amount > 100.0)
    verdict: require_approval
    approvers: [manager]
  - id: small-refunds-are-fine
    when: action.name == "shop.refund"
    verdict: allow
default: require_approval
default_approvers: [manager]
"""


def test_history_sees_a_refund_split_across_requests() -> None:
    policy = Policy.from_text(SPLIT_POLICY, action_params=ACTION_PARAMS)
    refund = {"order_id": 1001, "amount": 70.0, "reason": "x"}
    assert policy.evaluate("shop.refund", refund, "U1").verdict == "allow"  # no history: none before
    same_order = History(order_refunded=70.0)
    assert policy.evaluate("shop.refund", refund, "U1", history=same_order).verdict == "require_approval"
    same_day = History(requester_today={"shop.refund": 40.0})
    assert policy.evaluate("shop.refund", refund, "U1", history=same_day).verdict == "require_approval"
    other_actions = History(requester_today={"email.send": 500.0})
    assert policy.evaluate("shop.refund", refund, "U1", history=other_actions).verdict == "allow"


def test_a_user_group_counts_for_the_requesters_roles(policy: Policy) -> None:
    email = {"to": "a@b.example"}
    assert policy.evaluate("email.send", email, "U0EVE").rule_id == "default"
    managers = Policy.from_text(POLICY.replace("manager: [U0MANAGER]", "manager: [S0MANAGERS]"))
    verdict = managers.evaluate("email.send", email, "U0EVE", group_members={"S0MANAGERS": {"U0EVE"}})
    assert (verdict.verdict, verdict.rule_id) == ("allow", "managers-may-email")
    assert managers.roles_of("U0EVE", {"S0MANAGERS": {"U0EVE"}}) == ["manager"]
    assert managers.group_ids() == {"S0MANAGERS", "S0EDITORS"}


def test_totals_of_actions_a_condition_names_are_zero_even_when_that_action_is_not_installed() -> None:
    """A stored policy version replayed later is loaded without the installed actions: a rule adding another
    action's total must still see 0 for it, not fail (which would deny)."""
    policy = Policy.from_text(
        """
version: 1
roles:
  manager: [U0MANAGER]
rules:
  - id: refunds-past-500-a-day
    when: >-
      action.name == "stripe.refund"
      && run.totals["stripe.refund"] + requester.today["shop.refund"] + requester.today["old.refund"] > 500.0
    verdict: require_approval
    approvers: [manager]
  - id: small-ones
    when: action.name == "stripe.refund"
    verdict: allow
default: deny
"""
    )
    small = policy.evaluate("stripe.refund", {"amount": 40.0}, "U0ALICE", {"stripe.refund": 40.0})
    assert (small.verdict, small.rule_id) == ("allow", "small-ones")
    large = policy.evaluate(
        "stripe.refund",
        {"amount": 40.0},
        "U0ALICE",
        {"stripe.refund": 40.0},
        history=History(requester_today={"shop.refund": 480.0}),
    )
    assert (large.verdict, large.rule_id) == ("require_approval", "refunds-past-500-a-day")
