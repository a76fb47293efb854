"""Who may decide an approval request. Pure: the caller passes the clock and any user-group members."""

from __future__ import annotations

import enum
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from datetime import datetime


class Refusal(enum.StrEnum):
    ALREADY_DECIDED = "already_decided"
    EXPIRED = "expired"
    SELF_APPROVAL = "self_approval"
    NOT_AN_APPROVER = "not_an_approver"
    ALREADY_VOTED = "already_voted"
    CARD_OUTDATED = "card_outdated"  # the click was on a card drawn before the request was edited


@dataclass(frozen=True)
class ApprovalRequestView:
    """What authorisation needs to know about an approval request."""

    status: str
    requester: str
    approver_roles: tuple[str, ...]
    forbid_self_approval: bool
    expires_at: datetime | None
    quorum: int = 1
    escalate_to: tuple[str, ...] = ()
    escalate_at: datetime | None = None

    def deciding_roles(self, now: datetime) -> tuple[str, ...]:
        """The rule's approvers, joined by ``escalate_to`` once the request is due to escalate: those people
        are called in to decide, so they may."""
        escalated = self.escalate_at is not None and now >= self.escalate_at
        extra = self.escalate_to if escalated else ()
        return tuple(dict.fromkeys((*self.approver_roles, *extra)))


def group_ids(roles: Mapping[str, Collection[str]], role_names: Collection[str]) -> set[str]:
    """The Slack user-group ids (S…) named by these roles: the caller looks up their members."""
    return {m for role in role_names for m in roles.get(role, ()) if m.startswith("S")}


def is_in_roles(
    user: str,
    role_names: Collection[str],
    roles: Mapping[str, Collection[str]],
    group_members: Mapping[str, Collection[str]],
) -> bool:
    for role in role_names:
        for member in roles.get(role, ()):
            if member == user or user in group_members.get(member, ()):
                return True
    return False


def authorise_approval(
    request: ApprovalRequestView,
    user: str,
    *,
    approve: bool,
    roles: Mapping[str, Collection[str]],
    group_members: Mapping[str, Collection[str]],
    now: datetime,
) -> Refusal | None:
    """None when ``user`` may decide the request now; otherwise why not.

    The requester may withdraw (reject) their own request; approving it needs someone else when the rule
    forbids self-approval or asks for a quorum (the requester never counts towards one), escalated or not.
    """
    if request.status != "pending":
        return Refusal.ALREADY_DECIDED
    if request.expires_at is not None and now >= request.expires_at:
        return Refusal.EXPIRED
    if not approve and user == request.requester:
        return None
    if approve and (request.forbid_self_approval or request.quorum > 1) and user == request.requester:
        return Refusal.SELF_APPROVAL
    if not is_in_roles(user, request.deciding_roles(now), roles, group_members):
        return Refusal.NOT_AN_APPROVER
    return None
