"""A policy file's `tests:` (schema and runner) and the evaluation of its rules against typical actions."""

from __future__ import annotations

import subprocess
from importlib.metadata import entry_points

import pytest
from pydantic import BaseModel

from connectors.registry import ENTRY_POINT_GROUP, installed_action_params
from policies.engine import DEFAULT_POLICY, Policy
from policies.errors import PolicyError
from policies.policy_tests import ActionModels, check, rule_problems, run_tests, sample_params
from tests.fakes.aios_process import AIOS

RULES = """
version: 1
roles:
  manager: [U0MANAGER]
  editor: [S0EDITORS]
rules:
  - id: refunds-over-100-need-a-manager
    when: action.name == "shop.refund" && action.params.amount > 100.0
    verdict: require_approval
    approvers: [manager]
    forbid_self_approval: true
  - id: small-refunds-are-fine
    when: action.name == "shop.refund"
    verdict: allow
  - id: editors-may-publish
    when: action.name == "cms.publish" && "editor" in requester.roles
    verdict: allow
  - id: read-only-tools-are-fine
    when: action.name.startsWith("mcp.") && action.read_only
    verdict: allow
default: require_approval
default_approvers: [manager]
"""


@pytest.fixture(scope="module")
def models() -> ActionModels:
    return {model.name: model for ep in entry_points(group=ENTRY_POINT_GROUP) for model in ep.load().actions}


def load(tests: str, rules: str = RULES) -> Policy:
    return Policy.from_text(rules + "tests:\n" + tests, "policy.yaml", installed_action_params())


def test_a_case_that_gets_what_it_expects_passes(models: ActionModels) -> None:
    policy = load("""
  - name: a $150 refund needs a manager who did not ask
    action: shop.refund
    params: {order_id: 1001, amount: 150, reason: broken}
    expect: {verdict: require_approval, rule: refunds-over-100-need-a-manager, approvers: [manager],
             forbid_self_approval: true}
""")
    [result] = run_tests(policy, models)
    assert result.passed, result.failures
    assert result.got is not None and result.got.approvers == ("manager",)


def test_a_wrong_verdict_fails_with_expected_and_got(models: ActionModels) -> None:
    policy = load("""
  - name: small refund
    action: shop.refund
    params: {order_id: 1001, amount: 20, reason: broken}
    expect: {verdict: require_approval}
""")
    [result] = run_tests(policy, models)
    assert result.failures == ("expected verdict require_approval, got allow",)


def test_a_wrong_rule_or_approvers_fails_and_a_misspelt_rule_id_is_named(models: ActionModels) -> None:
    policy = load("""
  - name: unpublish falls to the default
    action: cms.unpublish
    params: {slug: spring-sale}
    expect: {verdict: require_approval, rule: defualt, approvers: [editor]}
  - name: another rule
    action: shop.refund
    params: {order_id: 1001, amount: 20, reason: broken}
    expect: {verdict: allow, rule: refunds-over-100-need-a-manager}
""")
    misspelt, other = run_tests(policy, models)
    assert misspelt.failures == (
        "expected rule defualt (no rule has that id; did you mean default?), got default",
        "expected approvers [editor], got [manager]",
    )
    assert other.failures == ("expected rule refunds-over-100-need-a-manager, got small-refunds-are-fine",)


def test_params_are_checked_against_the_action_model(models: ActionModels) -> None:
    policy = load("""
  - name: typo in a parameter
    action: shop.refund
    params: {order_id: 1001, amonut: 20, reason: broken}
    expect: {verdict: allow}
  - name: typo in the action
    action: shop.refnud
    params: {}
    expect: {verdict: allow}
""")
    param, action = run_tests(policy, models)
    assert param.got is None and not param.passed
    assert "amonut: Extra inputs are not permitted (did you mean amount?)" in param.failures[0]
    assert "amount: Field required" in param.failures[0]
    assert action.failures == ('no connector offers action "shop.refnud" (did you mean shop.refund?)',)


def test_params_are_judged_as_the_model_gives_them(models: ActionModels) -> None:
    """An amount written as 150 is the model's 150.0, as the bot would judge it: CEL adds no int to a double."""
    policy = load(
        """
  - name: an amount written as an integer
    action: shop.refund
    params: {order_id: 1001, amount: 150, reason: broken}
    expect: {verdict: require_approval, rule: refunds-over-100-need-a-manager}
""",
        RULES.replace("action.params.amount > 100.0", "order.refunded + action.params.amount > 100.0"),
    )
    assert run_tests(policy, models)[0].failures == ()


def test_mcp_tools_facts_and_groups_are_what_the_conditions_see(models: ActionModels) -> None:
    policy = load("""
  - name: a read-only tool
    action: mcp.git.git_status
    params: {repo_path: .}
    read_only: true
    expect: {verdict: allow, rule: read-only-tools-are-fine}
  - name: a tool that is not read-only
    action: mcp.git.git_commit
    params: {message: x}
    expect: {verdict: require_approval, rule: default}
  - name: an editor through a user group
    action: cms.publish
    params: {slug: spring-sale}
    requester: U0ERIN
    groups: [S0EDITORS]
    expect: {verdict: allow, rule: editors-may-publish}
""")
    assert [result.failures for result in run_tests(policy, models)] == [(), (), ()]
    annotated = load("""
  - name: a refund said to be read-only
    action: shop.refund
    params: {order_id: 1001, amount: 20, reason: broken}
    read_only: true
    expect: {verdict: allow}
""")
    assert run_tests(annotated, models)[0].failures == (
        "read_only and destructive are annotations of MCP tools (mcp.…); other actions have neither",
    )


def test_history_facts_reach_the_conditions(models: ActionModels) -> None:
    policy = Policy.from_file(DEFAULT_POLICY, installed_action_params())
    cases = """
  - name: refunded before
    action: shop.refund
    params: {order_id: 1001, amount: 40, reason: broken}
    order_refunded: 80
    expect: {verdict: require_approval, rule: refunds-over-100-need-a-manager}
  - name: split in the run
    action: shop.refund
    params: {order_id: 1001, amount: 40, reason: broken}
    run_totals: {shop.refund: 140}
    expect: {verdict: require_approval, rule: refunds-over-100-need-a-manager}
  - name: moved today
    action: shop.refund
    params: {order_id: 1001, amount: 40, reason: broken}
    requester_today: {shop.refund: 480}
    expect: {verdict: require_approval, rule: refunds-past-500-a-day-need-a-manager}
  - name: none of it
    action: shop.refund
    params: {order_id: 1001, amount: 40, reason: broken}
    expect: {verdict: allow}
"""
    text = policy.text.split("\ntests:\n")[0] + "\ntests:\n" + cases
    results = run_tests(Policy.from_text(text, "policy.yaml", installed_action_params()), models)
    assert [result.failures for result in results] == [(), (), (), ()]


@pytest.mark.parametrize(
    ("case", "message"),
    [
        (
            "{name: a, action: shop.refund, expect: {verdict: allow, rul: x}}",
            "test 'a' (expect.rul): Extra inputs",
        ),
        (
            "{name: a, action: shop.refund, expect: {verdict: maybe}}",
            "test 'a' (expect.verdict): Input should be",
        ),
        (
            "{name: a, action: shop.refund, colour: red, expect: {verdict: allow}}",
            "test 'a' (colour): Extra inputs",
        ),
        ("{name: a, action: shop.refund}", "test 'a' (expect): Field required"),
        (
            "{name: a, action: x, requester: alice, expect: {verdict: allow}}",
            "'alice' is not a Slack user id",
        ),
    ],
)
def test_a_malformed_case_is_one_schema_line(case: str, message: str) -> None:
    with pytest.raises(PolicyError) as raised:
        load(f"  - {case}\n")
    assert message in str(raised.value) and "\n" not in str(raised.value)


def test_test_names_are_unique() -> None:
    case = "  - {name: same, action: shop.refund, expect: {verdict: allow}}\n"
    with pytest.raises(PolicyError, match="test 'same' appears twice"):
        load(case * 2)


def test_a_condition_the_engine_cannot_evaluate_is_a_problem_of_its_rule(models: ActionModels) -> None:
    rules = """
version: 1
roles:
  manager: [U0MANAGER]
rules:
  - id: reason-compared-with-a-number
    when: action.name == "shop.refund" && action.params.reason > 100
    verdict: deny
  - id: amount-of-every-action
    when: action.params.amount > 50.0
    verdict: deny
  - id: title-of-a-draft
    when: action.name == "cms.create_draft" && action.params.slug.startsWith("x")
    verdict: deny
  - id: fine
    when: action.name == "shop.refund" && action.params.amount > 50.0
    verdict: deny
default: require_approval
default_approvers: [manager]
"""
    policy = Policy.from_text(rules, "policy.yaml", installed_action_params())
    problems = {problem.rule: problem for problem in rule_problems(policy, models)}
    assert set(problems) == {"reason-compared-with-a-number", "amount-of-every-action", "title-of-a-draft"}
    compared = problems["reason-compared-with-a-number"]
    assert compared.actions == ("shop.refund",) and compared.error.startswith("No such overload")
    everywhere = problems["amount-of-every-action"]
    assert "cms.publish" in everywhere.actions and "shop.refund" not in everywhere.actions
    assert everywhere.error == "no such key 'amount'"
    assert "would be denied" in everywhere.message()
    # A draft's slug is optional: a condition that reads it without checking for null fails when it is unset.
    assert problems["title-of-a-draft"].actions == ("cms.create_draft",)
    assert not check(policy, models).ok


def test_a_test_denied_by_a_broken_condition_says_so(models: ActionModels) -> None:
    policy = load(
        """
  - name: small refund
    action: shop.refund
    params: {order_id: 1001, amount: 20, reason: broken}
    expect: {verdict: allow}
""",
        RULES.replace("action.params.amount > 100.0", "action.params.reason > 100"),
    )
    [result] = run_tests(policy, models)
    assert result.failures[-1].startswith(
        "the engine denied it: rule refunds-over-100-need-a-manager's `when` could not be evaluated (No such overload"
    )


def test_samples_have_the_json_types_the_engine_sees(models: ActionModels) -> None:
    small = sample_params(models["shopify.refund"], large=False)
    large = sample_params(models["shopify.refund"], large=True)
    assert (type(small["order_id"]), type(small["amount"]), small["restock"], small["lines"]) == (
        int,
        float,
        False,
        [],
    )
    assert large["lines"][0]["quantity"] == 1000 and large["restock"] is True
    draft_small, draft_large = (sample_params(models["cms.create_draft"], large=v) for v in (False, True))
    assert draft_small["slug"] is None and isinstance(draft_large["slug"], str)

    class Nested(BaseModel):
        when: str | None = None
        kind: tuple[int, ...] = ()

    assert sample_params(Nested, large=True) == {"when": "sample", "kind": [1000]}


def test_the_packaged_policy_passes_its_own_tests_and_every_rule_evaluates(models: ActionModels) -> None:
    """The packaged policy's check, through the installed `aios` as a team's pipeline would run it."""
    result = subprocess.run(
        [AIOS, "policy", "check", str(DEFAULT_POLICY)], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    report = check(Policy.from_file(DEFAULT_POLICY, installed_action_params()), models)
    assert report.ok and len(report.results) >= 15
    assert report.untested_rules == [], "every rule of the packaged policy needs a case under its tests:"
    assert (
        f"{len(report.results)} tests: {len(report.results)} passed, 0 failed; 0 rule problems"
        in result.stdout
    )
