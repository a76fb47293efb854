"""Accepting why a person rejected an approval: checked and stored before Slack gets its ack, like a click.

Only the person who rejected may say why, and a rejection gets one reason (so one revision). The Reject click
that came just before may still be being handled: a reason from someone whose Reject is stored and waiting is
accepted, and the handler waits for the click's outcome before acting on it.
"""

from __future__ import annotations

from dataclasses import dataclass

from storage.ids import format_id
from storage.records import Approval, ApprovalStatus, RejectionReason, utcnow
from storage.rejection_reasons import RejectionReasons
from storage.unit_of_work import UnitOfWorkFactory

MAX_REASON = 2000  # characters; the column's width


@dataclass(frozen=True)
class ReasonAnswer:
    """A stored reason (to be handled by ReviseRejected in ``channel``), or the problem to say instead."""

    reason_id: int | None = None
    channel: str = ""
    problem: str | None = None


async def accept_reason(
    units: UnitOfWorkFactory, approval_id: int, user: str, text: str
) -> ReasonAnswer | None:
    """Store ``user``'s reason for rejecting the approval; None when there is no reason to store (an empty
    one: the dialog skipped)."""
    reason = text.strip()
    if not reason:
        return None
    ref = format_id("AP", approval_id)
    if len(reason) > MAX_REASON:
        return ReasonAnswer(
            problem=f"Please keep it to {MAX_REASON:,} characters; this is {len(reason):,}. The agent needs "
            "what would be right, not the whole story."
        )
    async with units() as uow:
        approval = await uow.repo.get(Approval, approval_id)
        if approval is None:
            return ReasonAnswer(problem=f"There is no approval {ref}.")
        reasons = RejectionReasons(uow.repo.session)
        rejecter = await _rejecter(reasons, approval, user)
        if rejecter is None:
            state = (
                "is still waiting for a decision"
                if approval.status == ApprovalStatus.PENDING
                else (f"was {approval.status}")
            )
            return ReasonAnswer(problem=f"{ref} {state}, not rejected, so there is nothing to say why.")
        if rejecter != user:
            return ReasonAnswer(problem=f"Only <@{rejecter}> who rejected {ref} can say why")
        stored = await uow.repo.insert_if_absent(
            RejectionReason,
            {"approval_id": approval_id, "user": user, "reason": reason, "received_at": utcnow()},
        )
        existing = await reasons.of_approval(approval_id)
        await uow.commit()
    assert existing is not None and existing.id is not None
    if not stored:
        return ReasonAnswer(
            problem=f"{ref} already has its reason, from <@{existing.user}>; a rejection is revised only once."
        )
    return ReasonAnswer(reason_id=existing.id, channel=approval.channel)


async def _rejecter(reasons: RejectionReasons, approval: Approval, user: str) -> str | None:
    """Who rejected the approval: who decided it, or (while the click is being handled) who clicked Reject."""
    if approval.status == ApprovalStatus.REJECTED:
        return approval.decided_by
    if approval.status != ApprovalStatus.PENDING:
        return None
    clicked = await reasons.rejecting_clicks(approval.id or 0)
    return user if user in clicked else next(iter(clicked), None)
