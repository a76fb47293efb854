"""What would have changed a verdict, found and checked against the real policy engine (CEL and all)."""

from __future__ import annotations

import functools
import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import pytest

from connectors.registry import installed_action_params
from policies.approvers import Refusal
from policies.counterfactual import MAX_SENTENCES, counterfactual, refused_click
from policies.engine import Policy
from policies.replay import Facts, RecordedDecision, replay

DEFAULT = Policy.from_file()

TIERED = Policy.from_text("""
version: 1
roles:
  manager: [U0MANAGER]
  finance: [U0FIN]
rules:
  - id: huge-refunds-are-refused
    when: action.name == "shop.refund" && action.params.amount > 1000.0
    verdict: deny
  - id: finance-refunds-freely
    when: action.name == "shop.refund" && "finance" in requester.roles
    verdict: allow
  - id: big-refunds-need-a-manager
    when: action.name == "shop.refund" && action.params.amount > 100.0
    verdict: require_approval
    approvers: [manager]
  - id: small-refunds-are-fine
    when: action.name == "shop.refund"
    verdict: allow
  - id: mail-only-to-our-customers
    when: action.name == "email.send" && !action.params.to.endsWith("@example.com")
    verdict: deny
default: require_approval
default_approvers: [manager]
""")


@functools.cache
def as_the_bot_loads(policy: Policy) -> Policy:
    """The policy as the bot loads it: knowing every installed action, so a total of one the run had none of
    is zero. A stored version is loaded without them, as `/aios why` loads it."""
    return Policy.from_text(policy.text, policy.source, installed_action_params())


def recorded(policy: Policy, name: str, params: dict[str, Any], facts: Facts) -> RecordedDecision:
    """A decision as the bot makes and records one, under this policy with these facts."""
    blank = RecordedDecision(
        decision_id=1,
        action_id=1,
        run_id=1,
        name=name,
        params=params,
        verdict="",
        rule_id=None,
        policy_hash=policy.hash,
        approvers=(),
        facts=facts.as_json(),
        requester=facts.requester,
    )
    verdict = replay(as_the_bot_loads(policy), blank).new
    return replace(blank, verdict=verdict.verdict, rule_id=verdict.rule_id, approvers=verdict.approver_roles)


def refund(amount: float, **facts: Any) -> tuple[str, dict[str, Any], Facts]:
    params = {"order_id": 1001, "amount": amount, "reason": "arrived broken"}
    return "shop.refund", params, Facts("U0ALICE", run_totals={"shop.refund": amount}, **facts)


def verdict_at(policy: Policy, decision: RecordedDecision, amount: float) -> tuple[str, str]:
    """The engine's own verdict for the recorded action at another amount (run total moving with it)."""
    facts = dict(decision.facts or {})
    facts["run_totals"] = {**facts["run_totals"], decision.name: amount}
    changed = replace(decision, params={**decision.params, "amount": amount}, facts=facts)
    new = replay(policy, changed).new
    return new.verdict, new.rule_id


def test_a_refund_over_100_would_have_gone_through_at_100_or_less() -> None:
    decision = recorded(DEFAULT, *refund(250.0))
    assert decision.rule_id == "refunds-over-100-need-a-manager"

    assert counterfactual(DEFAULT, decision) == [
        "It would have been allowed without approval at $100.00 or less (rule small-refunds-are-fine)."
    ]
    # The claim, checked on both sides of the threshold by the engine itself.
    assert verdict_at(DEFAULT, decision, 100.0) == ("allow", "small-refunds-are-fine")
    assert verdict_at(DEFAULT, decision, 100.01)[0] == "require_approval"


def test_the_daily_limit_names_what_the_requester_moved_earlier_today() -> None:
    decision = recorded(DEFAULT, *refund(50.0, requester_today={"shop.refund": 480.0}))
    assert decision.rule_id == "refunds-past-500-a-day-need-a-manager"

    sentences = counterfactual(DEFAULT, decision)

    assert sentences == [
        "It would have been allowed without approval at $20.00 or less (rule small-refunds-are-fine).",
        "It would have been allowed without approval if the requester's earlier shop.refund actions today had "
        "come to $450.00 or less (rule small-refunds-are-fine); they came to $480.00.",
    ]


def test_what_the_order_had_refunded_before_is_named_with_the_order() -> None:
    decision = recorded(DEFAULT, *refund(50.0, order_refunded=70.0))
    assert decision.rule_id == "refunds-over-100-need-a-manager"

    assert (
        "It would have been allowed without approval if $50.00 or less had already been refunded on order 1001 "
        "(rule small-refunds-are-fine); $70.00 had been."
    ) in counterfactual(DEFAULT, decision)


def test_a_stripe_refund_names_the_payment_and_the_shop_refunds_its_daily_limit_counts() -> None:
    params = {"payment": "pi_3Nexample", "amount": 60.0, "reason": "duplicate charge"}
    on_payment = Facts("U0ALICE", run_totals={"stripe.refund": 60.0}, payment_refunded=45.0)
    decision = recorded(DEFAULT, "stripe.refund", params, on_payment)
    assert decision.rule_id == "stripe-refunds-over-100-need-a-manager"
    assert (
        "It would have been allowed without approval if $40.00 or less had already been refunded on payment "
        "pi_3Nexample (rule small-stripe-refunds-are-fine); $45.00 had been."
    ) in counterfactual(DEFAULT, decision)

    earlier_today = Facts(
        "U0ALICE", run_totals={"stripe.refund": 60.0}, requester_today={"shop.refund": 470.0}
    )
    decision = recorded(DEFAULT, "stripe.refund", params, earlier_today)
    assert decision.rule_id == "stripe-refunds-past-500-a-day-need-a-manager"
    assert (
        "It would have been allowed without approval if the requester's earlier shop.refund actions today had "
        "come to $440.00 or less (rule small-stripe-refunds-are-fine); they came to $470.00."
    ) in counterfactual(DEFAULT, decision)


def test_an_allowed_refund_says_where_approval_would_have_started() -> None:
    decision = recorded(DEFAULT, *refund(40.0))
    assert decision.verdict == "allow"

    assert counterfactual(DEFAULT, decision) == [
        "It would have needed approval by manager over $100.00 (rule refunds-over-100-need-a-manager)."
    ]


def test_publishing_has_no_amount_so_the_rule_and_its_approvers_are_said() -> None:
    decision = recorded(DEFAULT, "cms.publish", {"slug": "spring-sale"}, Facts("U0ALICE"))

    assert counterfactual(DEFAULT, decision) == [
        "Under rule publishing-needs-an-editor every cms.publish like this needs approval by editor, "
        "not by the requester."
    ]


def test_a_denied_refund_names_each_verdict_below_it_and_the_role_that_allows_it() -> None:
    decision = recorded(TIERED, *refund(2500.0))
    assert (decision.verdict, decision.rule_id) == ("deny", "huge-refunds-are-refused")

    sentences = counterfactual(TIERED, decision)

    assert sentences == [
        "It would have needed approval by manager from $100.01 to $1,000.00 (rule big-refunds-need-a-manager).",
        "It would have been allowed without approval at $100.00 or less (rule small-refunds-are-fine).",
    ]
    assert verdict_at(TIERED, decision, 1000.0)[0] == "require_approval"
    assert verdict_at(TIERED, decision, 1000.01)[0] == "deny"


def test_a_role_the_requester_lacks_is_named_when_it_would_have_allowed_the_action() -> None:
    decision = recorded(TIERED, *refund(250.0))
    assert decision.rule_id == "big-refunds-need-a-manager"

    assert (
        "It would have been allowed without approval had the requester been a finance "
        "(rule finance-refunds-freely)."
    ) in counterfactual(TIERED, decision)


def test_a_deny_with_nothing_that_would_allow_it_says_only_what_was_tried() -> None:
    email = {"to": "someone@elsewhere.test", "subject": "Hi", "body": "Hello"}
    decision = recorded(TIERED, "email.send", email, Facts("U0ALICE"))

    assert counterfactual(TIERED, decision) == [
        "Denied by rule mail-only-to-our-customers; another role of the requester would not have changed that."
    ]


def test_a_tool_its_server_marks_read_only_would_have_needed_no_approval() -> None:
    facts = Facts("U0ALICE", action_facts={"read_only": False, "destructive": True})
    decision = recorded(DEFAULT, "mcp.files.write_file", {"path": "notes.txt"}, facts)
    assert decision.rule_id == "other-tools-need-a-manager"

    assert counterfactual(DEFAULT, decision) == [
        "It would have been allowed without approval had its server marked the tool read-only "
        "(rule read-only-tools-are-fine)."
    ]


def test_a_read_only_tool_would_have_needed_a_manager_without_its_mark() -> None:
    facts = Facts("U0ALICE", action_facts={"read_only": True, "destructive": False})
    decision = recorded(DEFAULT, "mcp.files.read_file", {"path": "notes.txt"}, facts)

    assert counterfactual(DEFAULT, decision) == [
        "It would have needed approval by manager had its server not marked the tool read-only "
        "(rule other-tools-need-a-manager)."
    ]


def test_nothing_is_said_when_the_recorded_facts_do_not_give_the_recorded_verdict() -> None:
    decision = recorded(DEFAULT, *refund(250.0))
    # As if the policy had seen something not recorded: what-ifs from these facts could not be trusted.
    assert counterfactual(DEFAULT, replace(decision, verdict="allow", rule_id="small-refunds-are-fine")) == []


FRAGILE = Policy.from_text("""
version: 1
roles:
  manager: [U0MANAGER]
rules:
  - id: noted-refunds-need-a-manager
    when: action.name == "shop.refund" && action.params.amount > 100.0 && action.params.reason.matches("(")
    verdict: require_approval
    approvers: [manager]
  - id: refunds-are-fine
    when: action.name == "shop.refund"
    verdict: allow
default: deny
""")


def test_a_condition_that_cannot_be_evaluated_is_said_and_never_taken_for_the_policy_s_word() -> None:
    # Over $100 the first rule's condition fails (its pattern is no regex), and the engine denies: fail closed.
    denied = recorded(FRAGILE, *refund(250.0))
    assert (denied.verdict, denied.rule_id) == ("deny", "noted-refunds-need-a-manager")
    assert counterfactual(FRAGILE, denied) == [
        "The condition of rule noted-refunds-need-a-manager could not be evaluated for this action, so the "
        "policy blocked it (it fails closed)."
    ]
    # Allowed at $40; dearer amounts only fail the condition, which is no rule's verdict, so nothing is claimed.
    allowed = recorded(FRAGILE, *refund(40.0))
    assert counterfactual(FRAGILE, allowed) == ["Allowed without approval by rule refunds-are-fine."]


def test_a_budget_grant_has_no_counterfactual() -> None:
    grant = recorded(DEFAULT, "budget.grant", {"budget_id": "daily", "amount_usd": 5.0}, Facts("U0ALICE"))
    assert counterfactual(DEFAULT, grant) == []


@pytest.mark.parametrize("amount", [0.5, 99.99, 100.01, 137.42, 499.0, 5000.0])
def test_every_threshold_said_is_where_the_engine_changes_its_verdict(amount: float) -> None:
    decision = recorded(TIERED, *refund(amount))
    sentences = counterfactual(TIERED, decision)
    assert 1 <= len(sentences) <= MAX_SENTENCES
    for sentence in sentences:
        rule = re.search(r"\(rule ([\w-]+)\)", sentence)
        assert rule is not None
        for inside, outside in claimed_edges(sentence):
            assert verdict_at(TIERED, decision, inside)[1] == rule.group(1)
            assert verdict_at(TIERED, decision, outside)[1] != rule.group(1)


def claimed_edges(sentence: str) -> list[tuple[float, float]]:
    """For each edge an amount sentence names: an amount it says meets the rule, and one just past it."""
    if said := re.search(r"from \$([\d,.]+) to \$([\d,.]+)", sentence):
        low, high = dollars(said.group(1)), dollars(said.group(2))
        return [(low, round(low - 0.01, 2)), (high, round(high + 0.01, 2))]
    if said := re.search(r"at \$([\d,.]+) or less", sentence):
        edge = dollars(said.group(1))
        return [(edge, round(edge + 0.01, 2)), (0.01, round(edge + 0.01, 2))]
    if said := re.search(r"over \$([\d,.]+)", sentence):
        edge = dollars(said.group(1))
        return [(round(edge + 0.01, 2), edge)]
    return []


def dollars(text: str) -> float:
    return float(text.rstrip(".").replace(",", ""))


EXPIRES = datetime(2026, 11, 26, 14, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("refusal", "approve", "expected"),
    [
        (
            Refusal.NOT_AN_APPROVER,
            True,
            "U0BOB could not approve: not a manager (approvers: manager).",
        ),
        (
            Refusal.NOT_AN_APPROVER,
            None,
            "U0BOB could not decide: not a manager (approvers: manager).",
        ),
        (
            Refusal.SELF_APPROVAL,
            True,
            "U0BOB could not approve their own request: rule refunds-over-100-need-a-manager forbids "
            "self-approval; another manager has to (approvers: manager).",
        ),
        (
            Refusal.EXPIRED,
            False,
            "U0BOB could not reject: the request had expired at 2026-11-26 14:00 UTC; the action has to be "
            "asked again.",
        ),
        (
            Refusal.ALREADY_DECIDED,
            True,
            "U0BOB's click came after the request was decided, so it changed nothing.",
        ),
    ],
)
def test_a_refused_click_in_plain_words(refusal: Refusal, approve: bool | None, expected: str) -> None:
    said = refused_click(
        refusal,
        "U0BOB",
        approve=approve,
        deciding_roles=("manager",),
        rule_id="refunds-over-100-need-a-manager",
        expires_at=EXPIRES,
    )
    assert said == expected


def test_the_requester_never_counts_towards_a_quorum() -> None:
    said = refused_click(
        Refusal.SELF_APPROVAL,
        "U0FIN",
        approve=True,
        deciding_roles=("finance", "manager"),
        rule_id="big-refunds-need-two",
        quorum=2,
    )
    assert said == (
        "U0FIN could not approve their own request: the requester never counts towards rule "
        "big-refunds-need-two's quorum of 2; another finance or manager has to (approvers: finance, manager)."
    )
