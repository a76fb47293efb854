"""The policy's view of MCP tools: names known only after the policy loads, and the tools' annotations."""

from __future__ import annotations

import pytest

from connectors.registry import installed_action_params
from policies.engine import Policy
from policies.errors import PolicyError

POLICY = """
version: 1
roles:
  manager: [U0MANAGER]
rules:
  - id: no-resets
    when: action.name == "mcp.git.git_reset"
    verdict: deny
  - id: no-commits-to-main
    when: action.name == "mcp.git.git_checkout" && action.params.branch_name == "main"
    verdict: deny
  - id: destructive-tools-are-denied
    when: action.destructive
    verdict: deny
  - id: read-only-tools-are-fine
    when: action.name.startsWith("mcp.") && action.read_only
    verdict: allow
  - id: small-refunds-are-fine
    when: action.name == "shop.refund" && action.params.amount <= 100.0
    verdict: allow
default: require_approval
default_approvers: [manager]
"""


def policy(text: str = POLICY) -> Policy:
    return Policy.from_text(text, "policy.yaml", installed_action_params())


def test_rules_may_name_mcp_tools_and_their_params_before_any_server_is_connected() -> None:
    judged = policy()
    assert judged.evaluate("mcp.git.git_reset", {"repo_path": "/r"}, "U1").rule_id == "no-resets"
    checkout = judged.evaluate("mcp.git.git_checkout", {"repo_path": "/r", "branch_name": "main"}, "U1")
    assert checkout.rule_id == "no-commits-to-main"


def test_the_tools_annotations_are_facts_and_false_for_other_actions() -> None:
    judged = policy()
    read = judged.evaluate("mcp.time.get_current_time", {}, "U1", action_facts={"read_only": True})
    assert (read.verdict, read.rule_id) == ("allow", "read-only-tools-are-fine")
    wipe = judged.evaluate("mcp.fs.wipe", {}, "U1", action_facts={"read_only": False, "destructive": True})
    assert (wipe.verdict, wipe.rule_id) == ("deny", "destructive-tools-are-denied")
    refund = judged.evaluate("shop.refund", {"order_id": 1, "amount": 5.0, "reason": "x"}, "U1")
    assert (refund.verdict, refund.rule_id) == ("allow", "small-refunds-are-fine")


def test_a_misspelt_action_or_param_outside_mcp_is_still_refused() -> None:
    with pytest.raises(PolicyError, match="no connector offers"):
        policy(POLICY.replace('"shop.refund"', '"shop.refnud"'))
    with pytest.raises(PolicyError, match=r"action\.params\.amonut"):
        policy(POLICY.replace("action.params.amount", "action.params.amonut"))
    with pytest.raises(PolicyError, match=r"action\.readonly"):
        policy(POLICY.replace("action.read_only", "action.readonly"))


# What the git server's tools take, as params_by_action gives them once it is connected.
GIT_TOOLS = {
    "mcp.git.git_status": ["repo_path"],
    "mcp.git.git_checkout": ["branch_name", "repo_path"],
    "mcp.git.git_commit": ["message", "repo_path"],
    "mcp.git.git_reset": ["repo_path"],
}


def connected(*servers: dict[str, list[str]]) -> dict[str, list[str]]:
    params: dict[str, list[str]] = dict(installed_action_params())
    for tools in servers:
        params |= tools
    return params


def test_once_connected_the_rules_naming_its_tools_check_out() -> None:
    policy().check_action_params(connected(GIT_TOOLS))
    # A server that could not be connected has no tools to check its rules against: they are left alone.
    policy().check_action_params(connected())


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (
            ("action.params.branch_name", "action.params.branch_nme"),
            "policy.yaml: rule 'no-commits-to-main': its `when` names `action.params.branch_nme`, which "
            "mcp.git.git_checkout does not have (did you mean `action.params.branch_name`?)",
        ),
        (
            ('"mcp.git.git_reset"', '"mcp.git.git_rest"'),
            "policy.yaml: rule 'no-resets': its `when` names action \"mcp.git.git_rest\", which the MCP "
            "server git does not offer (did you mean `mcp.git.git_reset`?)",
        ),
        (
            (
                'action.name == "mcp.git.git_checkout"',
                'action.name in ["mcp.git.git_status", "mcp.git.git_commit"]',
            ),
            "policy.yaml: rule 'no-commits-to-main': its `when` names `action.params.branch_name`, which "
            "mcp.git.git_status or mcp.git.git_commit does not have",
        ),
    ],
)
def test_once_connected_a_misspelt_tool_or_parameter_is_one_line(
    change: tuple[str, str], message: str
) -> None:
    loaded = policy(POLICY.replace(*change))  # loads: nothing is known of the tools yet
    with pytest.raises(PolicyError) as raised:
        loaded.check_action_params(connected(GIT_TOOLS))
    assert str(raised.value).startswith(message) and "\n" not in str(raised.value)
    # Until the server is connected, the same rules cannot be checked and are not refused.
    loaded.check_action_params(connected())


def test_rules_naming_tools_by_prefix_are_left_to_evaluation() -> None:
    by_prefix = POLICY.replace(
        'action.name == "mcp.git.git_checkout"', 'action.name.startsWith("mcp.git.")'
    ).replace("action.params.branch_name", "action.params.anything")
    policy(by_prefix).check_action_params(connected(GIT_TOOLS))
