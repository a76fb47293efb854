"""What the runtime tells people, in its own terms: the handlers build these from the records and hand them to
the transport, which draws each its own way (Block Kit in Slack, text in the terminal).

Text that people or models wrote arrives raw where a field says so and is escaped by whoever draws it; fields
described as mrkdwn were composed by the handler, with what others wrote already escaped.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from agents.dates import UTC_ZONE


@dataclass(frozen=True)
class Thread:
    """Where a conversation happens: a channel, and the thread's first message (None: not started yet)."""

    channel: str
    ts: str | None


@dataclass(frozen=True)
class Notice:
    """A plain reply (mrkdwn), with an optional small-print line (ids, rule), also mrkdwn."""

    text: str
    context: str | None = None


@dataclass(frozen=True)
class CardEdit:
    """One edit of the action's parameters: who made it, and each changed parameter's value before and after
    (raw, as stored)."""

    editor: str
    changes: tuple[tuple[str, Any, Any], ...]


@dataclass(frozen=True)
class ApprovalCard:
    """What an approval request shows, built by the handlers from the stored records. ``summary``, ``params``,
    ``rationale`` and ``reason`` are raw text (a model or a requester may have written them)."""

    approval_id: str
    action_id: str
    decision_id: str
    summary: str
    params: dict[str, Any]
    rationale: str
    rule_id: str
    reason: str
    approver_roles: tuple[str, ...]
    requester: str
    expires_at: datetime | None
    quorum: int = 1
    voters: tuple[str, ...] = ()  # approvers so far, while a quorum is incomplete
    labels: Mapping[str, str] = field(default_factory=dict)  # parameter name -> what people call it
    zone: ZoneInfo = UTC_ZONE  # the team's time zone, in which times are told
    approver_mentions: str = ""  # mrkdwn mentions of the approver roles' members, composed by the handler
    edits: tuple[CardEdit, ...] = ()  # people's changes to the parameters, oldest first


@dataclass(frozen=True)
class ReviewLine:
    """One action of a run's review card. ``text`` is raw (a model or a requester may have written it);
    ``note`` is mrkdwn the handler composed (who clicked, the rule and its roles)."""

    approval_id: str
    text: str
    status: str  # an ApprovalStatus value
    decided_by: str | None = None
    note: str = ""  # why a click left it waiting
    edited_by: str | None = None  # who last changed its parameters, if anyone did


@dataclass(frozen=True)
class RunReview:
    """One card for a run whose actions wait for approval together, decided all at once or one by one."""

    run_id: str
    requester: str
    rationale: str  # raw
    approvers: tuple[str, ...]  # the roles that decide at least one of the lines
    lines: tuple[ReviewLine, ...]


@dataclass(frozen=True)
class EscalationMessage:
    """What an escalation shows. ``reason`` and ``question`` are raw text (a model or a grammar wrote them);
    ``people`` is the mrkdwn mention of those asked, composed by the handler."""

    run_id: str
    agent: str
    people: str
    reason: str
    question: str


@dataclass(frozen=True)
class ReportedFailed:
    """An action told as failed that took effect after all: another process booked its execution failed (a
    take-over whose own try failed) while the connector was doing it. Where the run's earlier steps stand after
    a failure (this one's, or an earlier one's): undone, being undone (an undo filed, not run yet), or handed to
    a person as they cannot be undone — action ids A-…"""

    undone: tuple[str, ...] = ()
    being_undone: tuple[str, ...] = ()
    handed_to_a_person: tuple[str, ...] = ()


@dataclass(frozen=True)
class Done:
    """An executed action's reply (``text`` and ``context`` mrkdwn); ``undo`` is its action id (A-…) when the
    action has an inverse, so that it can be asked to be taken back; ``reported_failed`` when it was told as
    failed before."""

    text: str
    context: str
    undo: str | None = None
    reported_failed: ReportedFailed | None = None


@dataclass(frozen=True)
class BudgetBlocked:
    """A run stopped by a hard budget limit: ``why`` in plain text, and the run (R-…) a grant would resume."""

    run_id: str
    why: str
