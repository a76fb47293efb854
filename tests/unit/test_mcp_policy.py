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
