"""The records the bot keeps: what was asked, what was proposed, what was decided, what ran.

Every table has an integer key shown to people with a short prefix (see :mod:`storage.ids`).
Times are stored as timezone-aware UTC.

Annotations here are evaluated as written (no ``from __future__ import annotations``): pydantic and SQLAlchemy
would otherwise parse every field's annotation back from a string, a tenth of the time this module takes to
import, and every `aios` command imports it.
"""

import enum
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, DateTime, Dialect, Index, LargeBinary, UniqueConstraint
from sqlalchemy.types import TypeDecorator
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class UtcDateTime(TypeDecorator[datetime]):
    """Timezone-aware UTC on every backend: SQLite keeps no zone, so one is put back on read."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError("naive datetime given to a UTC column")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


def _ts(**kwargs: Any) -> Any:
    return Field(default_factory=utcnow, sa_column=Column(UtcDateTime(), nullable=False, **kwargs))


def _json() -> Any:
    return Field(default_factory=dict, sa_column=Column(JSON, nullable=False))


class IntentStatus(enum.StrEnum):
    RECEIVED = "received"
    DISPATCHED = "dispatched"
    FAILED = "failed"


class RunStatus(enum.StrEnum):
    PLANNING = "planning"
    PAUSED = "paused"  # its agent is paused: it plans or executes when the agent is resumed
    OVER_BUDGET = "over_budget"  # stopped before a model call; a budget grant resumes it
    ANSWERED = "answered"  # the agent replied and proposed nothing
    AWAITING_APPROVAL = "awaiting_approval"
    EXECUTING = "executing"
    COMPLETED = "completed"
    DENIED = "denied"
    REJECTED = "rejected"
    FAILED = "failed"
    ESCALATED = "escalated"  # the planner asked a person instead of guessing; an answer in the thread goes on
    TAKEN_OVER = "taken_over"  # a person took the escalated request over: the run is closed
    # A person answered the escalation: the run is closed, and the answer goes on as a run of its own.
    PERSON_ANSWERED = "person_answered"


class ActionStatus(enum.StrEnum):
    PROPOSED = "proposed"
    AWAITING_APPROVAL = "awaiting_approval"
    APPROVED = "approved"
    DENIED = "denied"
    REJECTED = "rejected"
    EXPIRED = "expired"
    EXECUTED = "executed"
    FAILED = "failed"
    COMPENSATED = "compensated"  # executed, then undone because a later step of its run failed
    ESCALATED = "escalated"  # executed, could not be undone automatically, handed to a person


class ApprovalStatus(enum.StrEnum):
    PENDING = "pending"
    APPROVED = "approved"
    REJECTED = "rejected"
    EXPIRED = "expired"


class ExecutionStatus(enum.StrEnum):
    STARTED = "started"
    SUCCEEDED = "succeeded"
    FAILED = "failed"


# A run's state follows from its actions': the first of these whose action statuses one of its actions is in
# (waiting beats running beats failed beats done); none of them, denied.
RUN_STATUS_FROM_ACTIONS: tuple[tuple[RunStatus, tuple[ActionStatus, ...]], ...] = (
    (RunStatus.AWAITING_APPROVAL, (ActionStatus.AWAITING_APPROVAL,)),
    (RunStatus.EXECUTING, (ActionStatus.APPROVED, ActionStatus.PROPOSED)),
    (RunStatus.FAILED, (ActionStatus.FAILED,)),
    (RunStatus.COMPLETED, (ActionStatus.EXECUTED,)),
    (RunStatus.REJECTED, (ActionStatus.REJECTED, ActionStatus.EXPIRED)),
)
RUN_STATUS_OTHERWISE = RunStatus.DENIED


class Record(SQLModel):
    """What every table derives from. Rows come from the database and new ones are constructed without
    validation, so pydantic builds a table's validator and serializer when it is first used (a model_dump)
    rather than when this module is imported: building them for every table took a good part of each `aios`
    command's start."""

    model_config = {"defer_build": True}


class Once(Record, table=True):
    """Keys of things that must happen once: a Slack ``event_id`` (drops duplicates and retries), the offline
    notice in a thread, the digest of a period. Inserting the key is the claim."""

    key: str = Field(primary_key=True, max_length=200)
    created_at: datetime = _ts()


class Intent(Record, table=True):
    id: int | None = Field(default=None, primary_key=True)
    source: str = Field(max_length=20)  # slash, mention, im, console
    team_id: str = Field(default="", max_length=40)
    channel: str = Field(max_length=40)
    thread_ts: str | None = Field(default=None, max_length=40)
    user: str = Field(max_length=40, index=True)
    text: str
    message_ts: str | None = Field(default=None, max_length=40)  # the Slack message that carried the intent
    status: str = Field(max_length=20, default=IntentStatus.RECEIVED, index=True)
    created_at: datetime = _ts()
    owner: int | None = None  # the ProcessLease of the process that accepted it (none on old rows)


class Run(Record, table=True):
    # Runs by status, and by when they got there (the digest's completed runs of a period).
    __table_args__ = (Index("ix_run_status_updated_at", "status", "updated_at"),)

    id: int | None = Field(default=None, primary_key=True)
    intent_id: int = Field(foreign_key="intent.id", index=True)
    agent: str = Field(max_length=40)
    rationale: str = ""
    status: str = Field(max_length=20, default=RunStatus.PLANNING)
    budget_account: str | None = Field(default=None, max_length=200)  # the budget that stopped it, if any
    memories_used: list[int] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    created_at: datetime = _ts()
    updated_at: datetime = _ts()
    owner: int | None = None  # the ProcessLease of the process that last moved it on (none on old rows)
    # The thread so far as the agent was given it ({"role", "text"} each, authors in the text), so a model
    # replay gives another model the same context. None on runs from before it was kept.
    history: list[dict[str, str]] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class ProposedAction(Record, table=True):
    __tablename__ = "proposed_action"

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", index=True)
    name: str = Field(max_length=80)
    params: dict[str, Any] = _json()
    rationale: str = ""
    status: str = Field(max_length=20, default=ActionStatus.PROPOSED)
    compensates: int | None = Field(default=None, foreign_key="proposed_action.id")  # the action this undoes
    created_at: datetime = _ts()
    # The executed action a person asked to take back (`/aios undo`): this one is its inverse, filed as a new
    # run and judged by the policy like any other. Unlike ``compensates``, nothing failed.
    undoes_action_id: int | None = Field(default=None, foreign_key="proposed_action.id", index=True)


class Decision(Record, table=True):
    """A judgement about an action: the policy's verdict, a person's approval or rejection, a refused click."""

    # Verdicts of a period (the digest's policy denials).
    __table_args__ = (Index("ix_decision_verdict_created_at", "verdict", "created_at"),)

    id: int | None = Field(default=None, primary_key=True)
    action_id: int = Field(foreign_key="proposed_action.id", index=True)
    kind: str = Field(max_length=20)  # policy, human, refusal
    verdict: str = Field(max_length=30)
    rule_id: str | None = Field(default=None, max_length=120)
    policy_hash: str | None = Field(default=None, max_length=64)
    reason: str = ""  # why the verdict: the rule's reason, or why a click was refused
    justification: str = ""  # the agent's rationale for the action, or who decided and how
    actor: str = Field(max_length=40)
    created_at: datetime = _ts()
    # For a policy verdict: what the policy saw besides the action (requester, groups, run totals, history),
    # so the decision can be judged again under another policy. None on rows from before it was kept.
    facts: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))


class EscalationStatus(enum.StrEnum):
    OPEN = "open"
    ANSWERED = "answered"  # someone replied in the thread; the reply is planned as a new run
    TAKEN_OVER = "taken_over"


class Escalation(Record, table=True):
    """A run handed to people instead of a guess: why, what they were asked, whom, and how it ended."""

    id: int | None = Field(default=None, primary_key=True)
    run_id: int = Field(foreign_key="run.id", unique=True)
    agent: str = Field(max_length=40)  # the agent that asked, or "dispatcher" when no agent fits
    reason: str
    question: str
    asked: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))  # U… and S… ids
    channel: str = Field(max_length=40)
    thread_ts: str | None = Field(default=None, max_length=40, index=True)
    message_ts: str | None = Field(default=None, max_length=40)  # the message asking, to update it later
    status: str = Field(max_length=20, default=EscalationStatus.OPEN, index=True)
    resolved_by: str | None = Field(default=None, max_length=40)
    answer: str | None = None  # the reply's words, when answered
    answer_run_id: int | None = Field(default=None, foreign_key="run.id")  # the run that planned the answer
    resolved_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    created_at: datetime = _ts(index=True)


class RejectionReason(Record, table=True):
    """Why a person rejected an approval (the dialog after Reject, or the console's `reject … because`), stored
    before Slack gets its ack and marked processed once handled, like a click. One per approval, and so at most
    one revision per rejection: ``revision_run_id`` is set once, with the run that planned again. A reason whose
    Reject did not count is deleted, so the approval's one reason is the rejecter's."""

    __tablename__ = "rejection_reason"
    # A reason that did not count is deleted: its id (in the audit chain, with its tombstone) never names another.
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    approval_id: int = Field(foreign_key="approval.id", unique=True)
    user: str = Field(max_length=40)
    reason: str = Field(max_length=2000)
    received_at: datetime = _ts()
    processed_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), index=True))
    revision_run_id: int | None = Field(default=None, foreign_key="run.id")
    # The lease of the process planning the revision: a compare-and-set, taken over only once that process died.
    owner: int | None = None
    # The lease of the process that stored it and hands it on: one it died before handing on is anyone's at once.
    received_by: int | None = None
    # noted (told in the thread), then revised or recorded (kept, no revision); one not counted is deleted
    outcome: str | None = Field(default=None, max_length=20)


class ScheduledPublish(Record, table=True):
    """A post due to go out later: written with the executed publish that scheduled it, and settled by the timer
    sweep once its time has come. ``claimed_by`` (a process lease) is the compare-and-set that lets one replica
    act on it at a time; a failed attempt frees it again for ``next_try_at``."""

    __tablename__ = "scheduled_publish"

    id: int | None = Field(default=None, primary_key=True)
    action_id: int = Field(foreign_key="proposed_action.id", unique=True)  # the cms.publish that scheduled it
    slug: str = Field(max_length=120)
    connector: str = Field(max_length=60)  # the CMS that holds the post (SandboxCms, WordPressCms)
    publish_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False, index=True))
    zone: str = Field(max_length=60)  # the team's time zone when it was scheduled: how the thread is told
    channel: str = Field(max_length=40)
    thread_ts: str | None = Field(default=None, max_length=40)
    claimed_by: int | None = None
    claimed_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    attempts: int = 0
    next_try_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    last_error: str | None = None
    outcome: str | None = Field(default=None, max_length=20)  # published, already_live, left_alone
    detail: str | None = None
    done_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), index=True))
    created_at: datetime = _ts()


class PlannedSlot(Record, table=True):
    """A post a content calendar planned: written with the executed draft that carries its time, so the calendar
    shows what was planned, and the draft by its slug says how far the post got."""

    __tablename__ = "planned_slot"

    id: int | None = Field(default=None, primary_key=True)
    action_id: int = Field(foreign_key="proposed_action.id", unique=True)  # the cms.create_draft of the slot
    team_id: str = Field(max_length=40, index=True)
    slug: str = Field(max_length=120)
    title: str = Field(max_length=200)
    angle: str = ""
    planned_for: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False, index=True))
    zone: str = Field(max_length=60)  # the team's time zone when it was planned
    created_at: datetime = _ts()


class PolicyVersion(Record, table=True):
    """The text of every policy that judged an action, by the content hash its decisions record."""

    __tablename__ = "policy_version"

    hash: str = Field(primary_key=True, max_length=64)
    text: str
    first_seen_at: datetime = _ts()


class Approval(Record, table=True):
    id: int | None = Field(default=None, primary_key=True)
    action_id: int = Field(foreign_key="proposed_action.id", unique=True)
    decision_id: int = Field(foreign_key="decision.id")
    status: str = Field(max_length=20, default=ApprovalStatus.PENDING, index=True)
    approver_roles: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    forbid_self_approval: bool = False
    requester: str = Field(max_length=40)
    channel: str = Field(max_length=40)
    thread_ts: str | None = Field(default=None, max_length=40)
    message_ts: str | None = Field(default=None, max_length=40)
    quorum: int = 1
    escalate_to: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    escalate_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), index=True))
    escalated_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    expires_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), index=True))
    decided_by: str | None = Field(default=None, max_length=40)
    decided_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    created_at: datetime = _ts()


class ApprovalVote(Record, table=True):
    """One approver's yes towards an approval's quorum; a person counts once."""

    __tablename__ = "approval_vote"
    __table_args__ = (UniqueConstraint("approval_id", "user", name="uq_approval_vote_user"),)

    id: int | None = Field(default=None, primary_key=True)
    approval_id: int = Field(foreign_key="approval.id", index=True)
    user: str = Field(max_length=40)
    created_at: datetime = _ts()


class Click(Record, table=True):
    """An Approve or Reject click, stored before Slack gets its ack and marked processed once handled: a process
    that stops in between leaves it here for the next start to handle, so an acknowledged click is never lost."""

    id: int | None = Field(default=None, primary_key=True)
    approval_id: int  # as the button carried it; not a foreign key, since a click may name no approval
    user: str = Field(max_length=40)
    approve: bool
    channel: str = Field(max_length=40)
    # How many edits of the request the clicked card showed; None where no card was clicked (the console, a
    # review card's Approve all). A click on a card drawn before a later edit does not count.
    edits_seen: int | None = None
    received_at: datetime = _ts()
    processed_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), index=True))
    # The lease of the process that stored the click and decides it; recovery takes it over once that one died.
    owner: int | None = None


class ActionEdit(Record, table=True):
    """A person's change to a waiting action's parameters, stored before Slack gets its ack and marked processed
    once handled (like a click). Handling fills in what it changed and how it ended: the verdict the edited
    action got, or why the edit was refused."""

    __tablename__ = "action_edit"

    id: int | None = Field(default=None, primary_key=True)
    approval_id: int = Field(
        index=True
    )  # as submitted; not a foreign key, since an edit may name no approval
    action_id: int | None = Field(default=None, foreign_key="proposed_action.id", index=True)
    user: str = Field(max_length=40)
    channel: str = Field(max_length=40)
    params_before: dict[str, Any] | None = Field(default=None, sa_column=Column(JSON, nullable=True))
    params_after: dict[str, Any] = _json()
    changed: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    outcome: str | None = None  # the verdict the edited action got, or why the edit was refused
    received_at: datetime = _ts()
    processed_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), index=True))
    owner: int | None = None  # as a click's


class AgentPause(Record, table=True):
    """An agent stopped by `/aios pause`: no new runs plan and no approved action of its runs executes."""

    __tablename__ = "agent_pause"

    agent: str = Field(primary_key=True, max_length=40)
    paused_by: str = Field(max_length=40)
    created_at: datetime = _ts()


class Execution(Record, table=True):
    __table_args__ = (
        UniqueConstraint("idempotency_key", name="uq_execution_idempotency_key"),
        Index("ix_execution_status_started_at", "status", "started_at"),  # the digest's failures of a period
    )

    id: int | None = Field(default=None, primary_key=True)
    action_id: int = Field(foreign_key="proposed_action.id", index=True)
    idempotency_key: str = Field(max_length=64)
    status: str = Field(max_length=20, default=ExecutionStatus.STARTED)
    result: dict[str, Any] = _json()
    error: str | None = None
    started_at: datetime = _ts()
    finished_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    owner: int | None = None  # the ProcessLease of the process that claimed it (none on old rows)


# What the spend reports sum, so the indexes below answer them without reading the rows.
_LLM_SUMMED = (
    "outcome",
    "input_tokens",
    "output_tokens",
    "cache_creation_tokens",
    "cache_read_tokens",
    "cost_usd",
)


class LlmCall(Record, table=True):
    """One model call: what it cost, how long it took, how it ended, and whom it was for."""

    __tablename__ = "llm_call"
    # Spend in a period (the digest, `aios cost`): by time (runs, requesters), by agent then time (each agent's
    # calls in the period are one range, so no sort), by outcome then time (the errors), by run then time.
    __table_args__ = (
        Index("ix_llm_call_period", "created_at", "run_id", "requester", *_LLM_SUMMED),
        Index("ix_llm_call_agent_period", "agent", "created_at", *_LLM_SUMMED),
        Index("ix_llm_call_outcome_period", "outcome", "created_at"),
        Index("ix_llm_call_run_period", "run_id", "created_at", *_LLM_SUMMED),
    )

    id: int | None = Field(default=None, primary_key=True)
    intent_id: int = Field(foreign_key="intent.id", index=True)
    run_id: int | None = Field(default=None, foreign_key="run.id")
    agent: str = Field(max_length=40)
    requester: str = Field(max_length=40)
    channel: str = Field(max_length=40)
    team_id: str = Field(default="", max_length=40)
    model: str = Field(max_length=80)
    role: str = Field(max_length=20)  # dispatch, agent
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_tokens: int = 0
    cache_read_tokens: int = 0
    cost_usd: float = 0.0
    latency_ms: float = 0.0
    outcome: str = Field(max_length=30)  # ok, or the error kind
    error: str | None = None
    created_at: datetime = _ts()


class BudgetAccount(Record, table=True):
    """One budget's money for one scope value and period: reserved by calls in flight, spent, granted."""

    __tablename__ = "budget_account"

    key: str = Field(primary_key=True, max_length=200)  # budget id : scope value : period
    budget_id: str = Field(max_length=120, index=True)
    scope_value: str = Field(max_length=80)
    period: str = Field(max_length=20)
    limit_usd: float
    reserved_usd: float = 0.0
    spent_usd: float = 0.0
    granted_usd: float = 0.0
    warned: bool = False
    updated_at: datetime = _ts()

    @property
    def available_usd(self) -> float:
        return self.limit_usd + self.granted_usd - self.spent_usd - self.reserved_usd


class Capability(Record, table=True):
    """Permission to execute one action once: minted by an allowing verdict or a won approval, bound to the
    action's name and exact parameters (a hash), the policy in force, who granted it, and an expiry."""

    id: int | None = Field(default=None, primary_key=True)
    action_id: int = Field(foreign_key="proposed_action.id", unique=True)
    action_name: str = Field(max_length=80)
    params_hash: str = Field(max_length=64)
    policy_hash: str = Field(max_length=64)
    granted_by: str = Field(max_length=40)  # "policy" or the approver
    expires_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    spent_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    created_at: datetime = _ts()


class ExecutionAttempt(Record, table=True):
    """One call to a connector for an execution; retries and reconciliations each add one."""

    __tablename__ = "execution_attempt"

    id: int | None = Field(default=None, primary_key=True)
    execution_id: int = Field(foreign_key="execution.id", index=True)
    number: int
    kind: str = Field(max_length=20)  # execute, lookup
    outcome: str = Field(max_length=30)  # ok, not_found, transient, permanent, timeout
    error: str | None = None
    created_at: datetime = _ts()


class Memory(Record, table=True):
    """Something worth remembering across threads, scoped to one Slack team (tenant).

    ``key`` serves exact lookups (``order:1003``, ``customer:ana@example.com``, ``post:spring-lookbook``);
    the text is searched by keywords. The same text is stored once per team (``content_hash``)."""

    # A forgotten memory's id is never given to a new one: `M-4` in an old answer must not name something else.
    __table_args__ = (
        UniqueConstraint("team_id", "content_hash", name="uq_memory_team_content"),
        {"sqlite_autoincrement": True},
    )

    id: int | None = Field(default=None, primary_key=True)
    team_id: str = Field(max_length=40, index=True)
    kind: str = Field(max_length=30, index=True)
    key: str | None = Field(default=None, max_length=200, index=True)
    text: str
    content_hash: str = Field(max_length=64)
    meta: dict[str, Any] = _json()
    created_at: datetime = _ts()
    expires_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime(), index=True))
    last_used_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    use_count: int = 0
    vector: bytes | None = Field(default=None, sa_column=Column(LargeBinary))  # float32, unit length
    vector_model: str | None = Field(default=None, max_length=80)


class Incident(Record, table=True):
    """Something that went wrong outside a run and that the digest should report (say, memory degraded)."""

    id: int | None = Field(default=None, primary_key=True)
    kind: str = Field(max_length=40, index=True)  # memory
    detail: str
    created_at: datetime = _ts(index=True)


class ProcessLease(Record, table=True):
    """A running bot process. Its id is the lease it records on the work it does; whether the process is still
    alive is told by a lock it holds (see :mod:`storage.leases`), not by this row, which is only its name."""

    __tablename__ = "process_lease"
    # An id is never given to a second process, or a new process would inherit a dead one's work as its own.
    __table_args__ = {"sqlite_autoincrement": True}

    id: int | None = Field(default=None, primary_key=True)
    host: str = Field(max_length=255)
    pid: int
    started_at: datetime = _ts()


# --- The sandbox connectors' own state: a shop, a CMS and an outbox. ---


class SandboxOrder(Record, table=True):
    __tablename__ = "sandbox_order"

    id: int = Field(primary_key=True)
    customer_name: str
    customer_email: str
    item: str
    total: float
    refunded: float = 0.0
    status: str = "delivered"


class SandboxRefund(Record, table=True):
    __tablename__ = "sandbox_refund"
    __table_args__ = (UniqueConstraint("idempotency_key", name="uq_sandbox_refund_idempotency_key"),)

    id: int | None = Field(default=None, primary_key=True)
    order_id: int = Field(foreign_key="sandbox_order.id", index=True)
    amount: float
    reason: str
    idempotency_key: str = Field(max_length=64)
    created_at: datetime = _ts()


class SandboxPost(Record, table=True):
    __tablename__ = "sandbox_post"

    id: int | None = Field(default=None, primary_key=True)
    slug: str = Field(max_length=120, unique=True)
    title: str
    body: str = ""
    status: str = "draft"  # draft, scheduled, published, unpublished
    publish_at: datetime | None = Field(default=None, sa_column=Column(UtcDateTime()))
    idempotency_keys: list[str] = Field(default_factory=list, sa_column=Column(JSON, nullable=False))
    updated_at: datetime = _ts()


class SandboxEmail(Record, table=True):
    __tablename__ = "sandbox_email"
    __table_args__ = (UniqueConstraint("idempotency_key", name="uq_sandbox_email_idempotency_key"),)

    id: int | None = Field(default=None, primary_key=True)
    to: str
    subject: str
    body: str
    idempotency_key: str = Field(max_length=64)
    created_at: datetime = _ts()


class SandboxSocialPost(Record, table=True):
    """A social post the sandbox recorded instead of posting (any network), by idempotency key."""

    __tablename__ = "sandbox_social_post"
    __table_args__ = (UniqueConstraint("idempotency_key", name="uq_sandbox_social_post_idempotency_key"),)

    id: int | None = Field(default=None, primary_key=True)
    network: str = Field(max_length=20)
    text: str
    post: str | None = Field(default=None, max_length=120)  # the slug of the post it promotes
    status: str = Field(max_length=20)  # recorded (at once), scheduled
    publish_at: datetime = Field(sa_column=Column(UtcDateTime(), nullable=False))
    idempotency_key: str = Field(max_length=64)
    created_at: datetime = _ts()


class SentMessage(Record, table=True):
    """What a connector sent to a system that cannot be asked afterwards (an SMTP server, a webhook receiver),
    by idempotency key: after a crash, that connector's ``lookup`` reads this ledger instead."""

    __tablename__ = "sent_message"
    __table_args__ = (UniqueConstraint("idempotency_key", name="uq_sent_message_idempotency_key"),)

    id: int | None = Field(default=None, primary_key=True)
    idempotency_key: str = Field(max_length=64)
    channel: str = Field(max_length=20)  # smtp, webhook
    target: str = Field(max_length=320)  # the recipient's address, or the webhook's name
    result: dict[str, Any] = _json()
    sent_at: datetime = _ts()


class AuditEntry(Record, table=True):
    """One link of the audit chain: a governance record's content as written, chained to the entry before by
    hash (see :mod:`storage.audit`). An update of a record is a new entry; entries are never changed."""

    __tablename__ = "audit_entry"
    __table_args__ = (Index("ix_audit_entry_record", "record_table", "record_id"),)

    seq: int = Field(primary_key=True, sa_column_kwargs={"autoincrement": False})
    record_table: str = Field(max_length=40)
    record_id: str = Field(max_length=64)
    content: str  # the canonical JSON the content hash is of
    content_hash: str = Field(max_length=64)
    prev_hash: str = Field(max_length=64)
    entry_hash: str = Field(max_length=64)
    recorded_at: datetime = _ts(index=True)


class UndoRequest(Record, table=True):
    """A person asked to undo an executed action; ``intent_id`` is the request as filed. The unique
    (action, attempt) is the claim: of two clicks at once one files, and a new attempt is only taken once the
    one before it ended without undoing (rejected, denied, failed)."""

    __tablename__ = "undo_request"
    __table_args__ = (UniqueConstraint("action_id", "attempt", name="uq_undo_request_attempt"),)

    id: int | None = Field(default=None, primary_key=True)
    action_id: int = Field(foreign_key="proposed_action.id")
    attempt: int
    intent_id: int = Field(foreign_key="intent.id", index=True)
    requested_by: str = Field(max_length=40)
    created_at: datetime = _ts()


class MemoryIndexQueue(Record, table=True):
    """A memory that a separate search index (Weaviate) has yet to be told about: written in the transaction that
    stored or deleted it and deleted once the index has caught up, so a crash or an outage between the commit and
    the index loses nothing. ``op`` says what happened (add | remove); the index is given what the record holds.
    A row the index refused waits until ``due_at`` with the ``refusal``, so that it does not hold up the rest."""

    __tablename__ = "memory_index_queue"

    id: int | None = Field(default=None, primary_key=True)
    team_id: str = Field(max_length=40)
    memory_id: int
    op: str = Field(max_length=10)
    created_at: datetime = _ts()
    due_at: datetime = _ts(index=True)
    refusal: str | None = Field(default=None, max_length=2000)


class HomeViewer(Record, table=True):
    """Someone who opened the app's Home tab. Their Home is drawn again when what it shows may have changed, and
    published only when it differs from the one published last (``last_published_hash``, a compare-and-set)."""

    __tablename__ = "home_viewer"

    user: str = Field(primary_key=True, max_length=40)
    team: str = Field(default="", max_length=40)
    last_published_hash: str | None = Field(default=None, max_length=64)
    opened_at: datetime = _ts(index=True)
