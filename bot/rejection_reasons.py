"""Accepting why a person rejected an approval: checked and stored before Slack gets its ack, like a click.

Only the person who rejected may say why, and a rejection gets one reason (so one revision). The Reject click
that came just before may still be being handled: a reason from someone whose Reject is stored and waiting, and
who may decide the approval, is accepted, and the handler waits for the click's outcome before acting on it (a
reason whose Reject then does not count is deleted, freeing the approval's one reason).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
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


MayReject = Callable[[Approval, str], Awaitable[bool]]


async def accept_reason(
    units: UnitOfWorkFactory,
    approval_id: int,
    user: str,
    text: str,
    *,
    may_reject: MayReject | None = None,
    received_by: int | None = None,
) -> ReasonAnswer | None:
    """Store ``user``'s reason for rejecting the approval; None when there is no reason to store (an empty
    one: the dialog skipped). ``may_reject``: whether a person may decide the approval now, asked of those
    whose Reject click is still waiting (without it, a waiting click counts as its clicker's). ``received_by``:
    the lease of this process, which hands the reason on; recovery takes over one whose process died first."""
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
        approval = await uow.get(Approval, approval_id)
        clicked = await RejectionReasons(uow.session).rejecting_clicks(approval_id)
    if approval is None:
        return ReasonAnswer(problem=f"There is no approval {ref}.")
    waiting = approval.status == ApprovalStatus.PENDING and user in clicked
    if waiting and may_reject is not None and not await may_reject(approval, user):
        return ReasonAnswer(
            problem=f"You may not decide {ref}, so your Reject does not count and there is nothing to say why."
        )
    rejecter = await _rejecter(approval, clicked, may_reject)
    if rejecter is None:
        state = (
            "is still waiting for a decision"
            if approval.status == ApprovalStatus.PENDING
            else (f"was {approval.status}")
        )
        return ReasonAnswer(problem=f"{ref} {state}, not rejected, so there is nothing to say why.")
    if rejecter != user:
        return ReasonAnswer(problem=f"Only <@{rejecter}> who rejected {ref} can say why.")
    async with units() as uow:
        stored = await uow.insert_if_absent(
            RejectionReason,
            {
                "approval_id": approval_id,
                "user": user,
                "reason": reason,
                "received_at": utcnow(),
                "received_by": received_by,
            },
        )
        existing = await RejectionReasons(uow.session).of_approval(approval_id)
        await uow.commit()
    assert existing is not None and existing.id is not None
    if not stored:
        if existing.user != user and existing.processed_at is None:
            # Theirs is deleted once their Reject turns out not to count; then this one can be kept.
            return ReasonAnswer(
                problem=f"<@{existing.user}>'s reason for {ref} is still being checked; send yours again in a "
                "few seconds."
            )
        return ReasonAnswer(
            problem=f"{ref} already has its reason, from <@{existing.user}>; a rejection is revised only once."
        )
    return ReasonAnswer(reason_id=existing.id, channel=approval.channel)


async def _rejecter(approval: Approval, clicked: list[str], may_reject: MayReject | None) -> str | None:
    """Who rejected the approval: who decided it, or (while the clicks are being handled) the first who
    clicked Reject and may decide it."""
    if approval.status == ApprovalStatus.REJECTED:
        return approval.decided_by
    if approval.status != ApprovalStatus.PENDING:
        return None
    for clicker in clicked:
        if may_reject is None or await may_reject(approval, clicker):
            return clicker
    return None
