"""Commands (imperative: do this) and events (past tense: this happened) on the message bus."""

from __future__ import annotations

from dataclasses import dataclass, fields, is_dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from connectors.actions import Action
    from runtime.notices import ReportedFailed
    from storage.memory import PreparedMemory
    from storage.repositories.executions import ExecutionInHand


class Command:
    """Handled by exactly one handler."""


class Event:
    """Handled by any number of handlers (possibly none)."""


def log_fields(message: Command | Event) -> dict[str, Any]:
    """What a log line says of a message: its type and the record ids it carries, never its words or
    parameters (a customer's email, an order's details, a memory's text)."""
    ids: dict[str, Any] = {}
    if is_dataclass(message):
        for field in fields(message):
            value = getattr(message, field.name)
            if isinstance(value, int) and not isinstance(value, bool):
                ids[field.name] = value
    return {"message_type": type(message).__name__, **ids}


@dataclass(frozen=True)
class HandleIntent(Command):
    intent_id: int


@dataclass(frozen=True)
class DecideApproval(Command):
    approval_id: int
    user: str
    approve: bool
    channel: str
    click_id: int | None = None  # the stored click this comes from, marked processed once handled
    recovered: bool = False  # re-submitted at start: its first handling may have got part of the way
    edits_seen: int | None = None  # how many edits the clicked card showed (None: no card was clicked)


@dataclass(frozen=True)
class DecideRun(Command):
    """Approve all or Reject all on a run's review card: each of its waiting approvals decided as if it were
    clicked on its own, by the same person."""

    run_id: int
    user: str
    approve: bool
    channel: str
    # The stored clicks, one per approval waiting when the button was pressed; None (the console) decides
    # those waiting now.
    click_ids: tuple[int, ...] | None = None
    recovered: bool = False  # re-submitted at start: its first handling may have got part of the way


@dataclass(frozen=True)
class EditApproval(Command):
    """A person changed a waiting action's parameters (the Edit dialog in Slack, `edit AP-3 …` in the console)."""

    approval_id: int
    user: str
    params: dict[str, Any]  # the parameters the person changed, put over the current ones when it is handled
    channel: str
    edit_id: int | None = None  # the stored edit this comes from, marked processed once handled
    recovered: bool = False  # re-submitted at start: its first handling may have got part of the way


@dataclass(frozen=True)
class RequestBudget(Command):
    run_id: int
    user: str
    channel: str


@dataclass(frozen=True)
class ReviseRejected(Command):
    """Someone said why they rejected an approval: record it, and plan the request once more with it."""

    approval_id: int
    user: str
    channel: str
    reason_id: int  # the stored reason, settled once handled
    recovered: bool = False  # re-submitted by recovery: its first handling may have got part of the way


@dataclass(frozen=True)
class TakeOverRun(Command):
    """A person takes over a run that was escalated to people: it closes, and the agent stops."""

    run_id: int
    user: str
    channel: str


@dataclass(frozen=True)
class PauseAgent(Command):
    agent: str
    user: str
    channel: str


@dataclass(frozen=True)
class ResumeAgent(Command):
    agent: str
    user: str
    channel: str


@dataclass(frozen=True)
class Remember(Command):
    team: str
    user: str
    channel: str
    text: str
    kind: str = "note"
    key: str | None = None  # None: the entity the text names, when it names exactly one
    problem: str | None = None  # what is wrong with the command as written: said instead of remembering


@dataclass(frozen=True)
class Recall(Command):
    team: str
    user: str
    channel: str
    query: str


@dataclass(frozen=True)
class ShowVoice(Command):
    """`/aios voice`: the brand-voice notes the content agent is given, told to the one who asked."""

    team: str
    user: str
    channel: str


@dataclass(frozen=True)
class Forget(Command):
    team: str
    user: str
    channel: str
    target: str  # a memory id (M-4) or words to match


@dataclass(frozen=True)
class AgentResumed(Event):
    agent: str


@dataclass(frozen=True)
class SweepTimers(Command):
    """Escalate and expire approvals whose deadlines have passed."""


@dataclass(frozen=True)
class PublishDuePosts(Command):
    """Make sure the scheduled posts whose time has come are live, and tell their threads."""


@dataclass(frozen=True)
class ExecuteAction(Command):
    action_id: int


@dataclass(frozen=True)
class ReconcileExecution(Command):
    """Settle an execution that a crash left in flight."""

    execution_id: int


@dataclass(frozen=True)
class ReplanRun(Command):
    """Plan again a run that a crash stopped before it proposed anything."""

    run_id: int


@dataclass(frozen=True)
class Recover(Command):
    """Find what a stopped process left unfinished and carry each piece on from its checkpoint."""

    grace_seconds: float
    at_start: bool = True  # False for the sweeps every few seconds, which take only work whose owner died
    # True in a worker: its claim loop plans the intents (those recovery takes over, as its lease's, too).
    claim_loop: bool = False


@dataclass(frozen=True)
class ActionAllowed(Event):
    action_id: int


@dataclass(frozen=True)
class ClaimedExecution:
    """An execution claimed with what running and booking it need: the typed action and the rows in hand."""

    in_hand: ExecutionInHand
    action: Action


@dataclass(frozen=True)
class ActionApproved(Event):
    action_id: int
    # Claimed by the click that approved it, in the click's transaction: the connector is called next.
    claimed: ClaimedExecution | None = None


@dataclass(frozen=True)
class ExecutedAction:
    """An executed action as its booking had it in hand: those told of it read this, not the store."""

    name: str
    params: dict[str, Any]
    run_id: int
    compensates: int | None  # the action it undoes, when it is a compensation
    team_id: str  # of the intent that asked for it
    channel: str
    thread_ts: str | None
    requester: str
    status: str  # the execution's
    result: dict[str, Any]
    finished_at: datetime
    approvers: tuple[str, ...]  # the people whose approvals let it run, in the order they approved
    allowed_by_rule: str | None  # the policy rule that let it run without asking anyone, if one did


@dataclass(frozen=True)
class ActionExecuted(Event):
    action_id: int
    execution_id: int
    action: ExecutedAction
    # The booking settled the outcome's memory in its own transaction (kept it, or the store refused it): there
    # is nothing left for Memories.remember_outcome to write.
    outcome_remembered: bool = False
    # The outcome's memory as prepared for the booking, when writing it there failed: written after the commit as
    # it is, without embedding it again.
    outcome_prepared: PreparedMemory | None = None
    # Booked over a failure booked (and told) before: what that failure had done to the run's earlier steps.
    reported_failed: ReportedFailed | None = None


@dataclass(frozen=True)
class ScheduledPostLive(Event):
    """A scheduled publish's timer found its post live at its time: it published it, or the CMS had."""

    action_id: int
    live_at: datetime


@dataclass(frozen=True)
class ActionFailed(Event):
    action_id: int
    error: str
    # False when the connector may have done the work before failing (a timeout, an error after retries, a bug).
    certainly_undone: bool = True


@dataclass(frozen=True)
class ProposeAction(Command):
    """Put one action proposed outside a conversation (by an MCP client) to the policy, as a run of the agent
    that offers it; the intent (received, not yet planned) is the request, and its thread gets the card."""

    intent_id: int
    agent: str
    action: str
    params: dict[str, Any]
    rationale: str
    undoes: int | None = None  # the executed action this one takes back (`/aios undo`)
