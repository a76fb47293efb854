"""The packaged policy on refunds of Stripe payments (stripe.refund): judged like shop.refund."""

from __future__ import annotations

import pytest

from connectors.registry import installed_action_params
from policies.engine import History, Policy

PAYMENT = {"payment": "pi_3Kettle", "reason": "wrong size"}


@pytest.fixture(scope="module")
def packaged() -> Policy:
    # Loaded against the installed connectors' actions: a rule naming an action nobody offers fails here.
    return Policy.from_file(None, installed_action_params())


@pytest.mark.parametrize(
    ("amount", "totals", "today", "verdict", "rule"),
    [
        (250.0, None, {}, "require_approval", "stripe-refunds-over-100-need-a-manager"),
        (100.0, None, {}, "allow", "small-stripe-refunds-are-fine"),
        (30.0, None, {}, "allow", "small-stripe-refunds-are-fine"),
        # $60 twice in one request is $120 asked at once.
        (60.0, {"stripe.refund": 120.0}, {}, "require_approval", "stripe-refunds-over-100-need-a-manager"),
        (
            90.0,
            None,
            {"stripe.refund": 411.0},
            "require_approval",
            "stripe-refunds-past-500-a-day-need-a-manager",
        ),
        (
            90.0,
            None,
            {"shop.refund": 411.0},
            "require_approval",
            "stripe-refunds-past-500-a-day-need-a-manager",
        ),
        (
            90.0,
            None,
            {"stripe.refund": 200.0, "shop.refund": 210.0},
            "allow",
            "small-stripe-refunds-are-fine",
        ),
    ],
    ids=["250", "100", "30", "split-in-one-request", "day-of-payments", "day-of-orders", "day-under-500"],
)
def test_stripe_refunds_over_100_or_past_500_a_day_need_a_manager_who_did_not_ask(
    packaged: Policy,
    amount: float,
    totals: dict[str, float] | None,
    today: dict[str, float],
    verdict: str,
    rule: str,
) -> None:
    judged = packaged.evaluate(
        "stripe.refund",
        {**PAYMENT, "amount": amount},
        "U0ALICE",
        totals or {"stripe.refund": amount},
        history=History(requester_today=today),
    )
    assert (judged.verdict, judged.rule_id) == (verdict, rule)
    if verdict == "require_approval":
        assert judged.approver_roles == ("manager",) and judged.forbid_self_approval
