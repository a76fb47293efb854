"""How the policy judges a proposed action: the facts it is given besides the action (what the run proposed
before it, money already moved on the order or payment, what the requester moved today, their groups), and the
deadlines an approval it asks for gets. Planning judges each new proposal so; an edited action is judged again
the same way."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import datetime, timedelta

from connectors.actions import Action, CmsCreateDraft, CmsPublish
from connectors.budget import BudgetGrant
from connectors.mcp_tools import McpToolAction
from policies.engine import History, Policy, PolicyVerdict
from policies.replay import Facts
from storage.records import ActionStatus, Decision, ProposedAction
from storage.unit_of_work import UnitOfWork

# What counts as money already moved on an order (executed, or approved and about to run), and as money a
# requester moved today (anything not turned down: a split request is seen while it still waits).
MOVED_MONEY = (ActionStatus.APPROVED, ActionStatus.EXECUTED, ActionStatus.ESCALATED)
COUNTED_TODAY = (
    ActionStatus.PROPOSED,
    ActionStatus.AWAITING_APPROVAL,
    ActionStatus.APPROVED,
    ActionStatus.EXECUTED,
    ActionStatus.ESCALATED,
)

# An action of the run judged before the one being judged, with the verdict it got (allow, deny, …).
Judged = tuple[Action, str]


async def judge(
    policy: Policy,
    clock: Callable[[], datetime],
    uow: UnitOfWork,
    action: Action,
    requester: str,
    run_id: int,
    judged: Sequence[Judged],
    group_members: Mapping[str, Collection[str]],
) -> tuple[PolicyVerdict, Facts]:
    """The policy's verdict on one action, given what the run proposed before it (``judged``) and what
    our records say happened before the run: amounts already refunded on the order, moved today. The
    facts are what the policy saw, kept with the decision so that it can be replayed."""
    if isinstance(action, BudgetGrant):
        return policy.evaluate_budget_grant(action.budget_id), Facts(requester=requester)
    params = action.model_dump(mode="json")
    totals: dict[str, float] = {}
    for earlier in [*(a for a, _ in judged), action]:
        totals[earlier.name] = totals.get(earlier.name, 0.0) + _amount(earlier)
    order_id, payment = _order_of(params), _payment_of(action.name, params)
    moved = await uow.runs.money_moved(
        action.name,
        requester,
        on_order=order_id,
        on_payment=payment,
        moved=MOVED_MONEY,
        since=clock().replace(hour=0, minute=0, second=0, microsecond=0),
        counted=COUNTED_TODAY,
        other_than_run=run_id,
    )
    order_refunded = payment_refunded = 0.0
    if order_id is not None:
        order_refunded = _allowed_on(judged, action.name, "order_id", order_id) + moved.on_order
    if payment is not None:
        payment_refunded = _allowed_on(judged, action.name, "payment", payment) + moved.on_payment
    today = moved.requester_today
    history = History(order_refunded=order_refunded, payment_refunded=payment_refunded, requester_today=today)
    action_facts = action.facts() if isinstance(action, McpToolAction) else None
    verdict = policy.evaluate(
        action.name,
        params,
        requester,
        totals,
        history=history,
        group_members=group_members,
        action_facts=action_facts,
    )
    facts = Facts(
        requester=requester,
        roles=tuple(policy.roles_of(requester, group_members)),
        groups=tuple(sorted(g for g, members in group_members.items() if requester in members)),
        run_totals=totals,
        order_refunded=order_refunded,
        payment_refunded=payment_refunded,
        requester_today=today,
        action_facts=action_facts,
    )
    return verdict, facts


def policy_decision(action_id: int, verdict: PolicyVerdict, facts: Facts, justification: str) -> Decision:
    """The record of the policy's verdict on an action, with the facts it was given, so that it can be
    replayed; ``justification``: why the action was judged (the plan's rationale, an edit)."""
    return Decision(
        action_id=action_id,
        kind="policy",
        verdict=verdict.verdict,
        rule_id=verdict.rule_id,
        policy_hash=verdict.policy_hash,
        reason=verdict.explanation,
        justification=justification,
        actor="policy",
        facts=facts.as_json(),
    )


def approval_deadlines(
    now: datetime, verdict: PolicyVerdict, proposed: ProposedAction
) -> tuple[datetime | None, datetime | None]:
    """When an approval the verdict asks for escalates, and when it expires (either may be None)."""
    timeout: timedelta | None = verdict.timeout
    # With escalate_to, the rule's timeout escalates and a second one expires; without, the first expires.
    escalate_at = now + timeout if timeout and verdict.escalate_to else None
    expires_at = now + timeout * (2 if escalate_at else 1) if timeout else None
    # A publish approved after its time could only fail, and a slot approved after its day would be planned
    # in the past: the request expires when the post was to go out.
    if going_out := _going_out(proposed):
        expires_at = going_out if expires_at is None else min(expires_at, going_out)
    return escalate_at, expires_at


def _going_out(proposed: ProposedAction) -> datetime | None:
    """When a publish's post, or a planned draft's slot, is to go out."""
    if proposed.name == CmsPublish.name:
        return CmsPublish.model_validate(proposed.params).publish_at
    if proposed.name == CmsCreateDraft.name:
        return CmsCreateDraft.model_validate(proposed.params).planned_for
    return None


def _order_of(params: Mapping[str, object]) -> int | None:
    order_id = params.get("order_id")
    return order_id if isinstance(order_id, int) else None


def _payment_of(action_name: str, params: Mapping[str, object]) -> str | None:
    """The Stripe payment a ``stripe.refund`` names (what is refunded on it is a fact for its refund alone)."""
    payment = params.get("payment")
    return payment if action_name == "stripe.refund" and isinstance(payment, str) else None


def _allowed_on(judged: Sequence[Judged], name: str, param: str, value: object) -> float:
    """What the run already allowed of this action on the same order or payment (judged before it)."""
    return sum(
        _amount(earlier)
        for earlier, verdict in judged
        if verdict == "allow" and earlier.name == name and earlier.model_dump().get(param) == value
    )


def _amount(action: Action) -> float:
    amount = action.model_dump().get("amount")
    return float(amount) if isinstance(amount, int | float) else 0.0
