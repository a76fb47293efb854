from __future__ import annotations

from datetime import UTC, datetime, timedelta

from policies.approvers import ApprovalRequestView, Refusal, authorise_approval, group_ids

NOW = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
ROLES = {"manager": ["U0MANAGER", "S0LEADS"], "editor": ["U0EDITOR"]}


def request(**changes: object) -> ApprovalRequestView:
    values: dict[str, object] = {
        "status": "pending",
        "requester": "U0ALICE",
        "approver_roles": ("manager",),
        "forbid_self_approval": True,
        "expires_at": NOW + timedelta(hours=1),
    }
    values.update(changes)
    return ApprovalRequestView(**values)  # type: ignore[arg-type]


def decide(
    view: ApprovalRequestView,
    user: str,
    *,
    approve: bool = True,
    groups: dict[str, set[str]] | None = None,
    now: datetime = NOW,
) -> Refusal | None:
    return authorise_approval(view, user, approve=approve, roles=ROLES, group_members=groups or {}, now=now)


def test_a_member_of_the_role_may_approve() -> None:
    assert decide(request(), "U0MANAGER") is None


def test_someone_without_the_role_may_not() -> None:
    assert decide(request(), "U0EDITOR") is Refusal.NOT_AN_APPROVER
    assert decide(request(), "U0EDITOR", approve=False) is Refusal.NOT_AN_APPROVER


def test_a_user_group_member_has_the_role() -> None:
    assert decide(request(), "U0LEAD", groups={"S0LEADS": {"U0LEAD"}}) is None
    assert group_ids(ROLES, ["manager"]) == {"S0LEADS"}


def test_the_requester_may_not_approve_their_own_when_the_rule_forbids_it() -> None:
    view = request(requester="U0MANAGER")
    assert decide(view, "U0MANAGER") is Refusal.SELF_APPROVAL
    assert decide(request(requester="U0MANAGER", forbid_self_approval=False), "U0MANAGER") is None


def test_the_requester_may_withdraw_their_own_request() -> None:
    assert decide(request(), "U0ALICE", approve=False) is None


def test_an_expired_request_cannot_be_decided() -> None:
    assert decide(request(), "U0MANAGER", now=NOW + timedelta(hours=1)) is Refusal.EXPIRED
    assert decide(request(expires_at=None), "U0MANAGER", now=NOW + timedelta(days=365)) is None


def test_a_decided_request_cannot_be_decided_again() -> None:
    for status in ("approved", "rejected", "expired"):
        assert decide(request(status=status), "U0MANAGER") is Refusal.ALREADY_DECIDED


def escalating(**changes: object) -> ApprovalRequestView:
    """A request for the editor role that escalates to the managers after half an hour."""
    values: dict[str, object] = {
        "approver_roles": ("editor",),
        "escalate_to": ("manager",),
        "escalate_at": NOW + timedelta(minutes=30),
        **changes,
    }
    return request(**values)


def test_the_people_escalated_to_may_decide_once_the_request_escalates() -> None:
    assert decide(escalating(), "U0MANAGER") is Refusal.NOT_AN_APPROVER
    later = NOW + timedelta(minutes=30)
    assert decide(escalating(), "U0MANAGER", now=later) is None
    assert decide(escalating(), "U0MANAGER", approve=False, now=later) is None
    assert decide(escalating(), "U0LEAD", groups={"S0LEADS": {"U0LEAD"}}, now=later) is None
    assert decide(escalating(), "U0EDITOR", now=later) is None  # the rule's approvers keep their say
    assert decide(escalating(), "U0BOB", now=later) is Refusal.NOT_AN_APPROVER
    assert escalating().deciding_roles(later) == ("editor", "manager")
    assert request(escalate_to=("manager",), escalate_at=NOW).deciding_roles(NOW) == ("manager",)


def test_escalation_does_not_lift_the_ban_on_self_approval() -> None:
    later = NOW + timedelta(minutes=45)
    assert decide(escalating(requester="U0MANAGER"), "U0MANAGER", now=later) is Refusal.SELF_APPROVAL
    view = escalating(requester="U0MANAGER", forbid_self_approval=False, quorum=2)
    assert decide(view, "U0MANAGER", now=later) is Refusal.SELF_APPROVAL
