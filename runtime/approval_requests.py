"""An approval record as the authorisation rules see it."""

from __future__ import annotations

from policies.approvers import ApprovalRequestView
from storage.records import Approval


def request_view(approval: Approval) -> ApprovalRequestView:
    return ApprovalRequestView(
        status=approval.status,
        requester=approval.requester,
        approver_roles=tuple(approval.approver_roles),
        forbid_self_approval=approval.forbid_self_approval,
        expires_at=approval.expires_at,
        quorum=approval.quorum,
        escalate_to=tuple(approval.escalate_to),
        escalate_at=approval.escalate_at,
    )
