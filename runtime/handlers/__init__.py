"""The service layer: what happens to an intent, an approval click and an approved action.

Each handler does its reads and writes in units of work and talks to people through the transport; long
waits (the model, connectors, Slack) happen outside any open transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from zoneinfo import ZoneInfo

from agents.dates import UTC_ZONE
from agents.dispatcher import Dispatcher
from agents.social_snippets import SocialSettings
from connectors.registry import ConnectorRegistry
from policies.engine import Policy
from runtime.handlers.approvals import Approvals
from runtime.handlers.base import Collaborators
from runtime.handlers.compensation import Compensation
from runtime.handlers.control import Control
from runtime.handlers.edits import Edits
from runtime.handlers.execution import CONNECTOR_ATTEMPTS, Executions
from runtime.handlers.memories import Memories
from runtime.handlers.planning import Planning
from runtime.handlers.recovery import Recovery
from runtime.handlers.revisions import Revisions
from runtime.handlers.scheduled_publishing import ScheduledPublishing
from runtime.handlers.snippets import Snippets
from runtime.handlers.voice import Voice
from runtime.messagebus import MessageBus
from runtime.messages import (
    ActionAllowed,
    ActionApproved,
    ActionExecuted,
    ActionFailed,
    AgentResumed,
    DecideApproval,
    DecideRun,
    EditApproval,
    ExecuteAction,
    Forget,
    HandleIntent,
    PauseAgent,
    ProposeAction,
    PublishDuePosts,
    Recall,
    ReconcileExecution,
    Recover,
    Remember,
    ReplanRun,
    RequestBudget,
    ResumeAgent,
    ReviseRejected,
    ScheduledPostLive,
    ShowVoice,
    SweepTimers,
    TakeOverRun,
)
from runtime.transport import Transport
from storage.leases import Lease
from storage.memory import MemoryStore
from storage.unit_of_work import UnitOfWorkFactory

__all__ = ["CONNECTOR_ATTEMPTS", "Handlers"]


class Handlers:
    """The handlers of each step (planning, approvals, revisions and edits, execution, compensation,
    recovery, control, memories, snippets, voice, scheduled publishing), built from one set of collaborators and
    subscribed to the bus."""

    def __init__(
        self,
        *,
        units: UnitOfWorkFactory,
        dispatcher: Dispatcher,
        policy: Policy,
        registry: ConnectorRegistry,
        transport: Transport,
        clock: Callable[[], datetime],
        offline: bool,
        memory: MemoryStore,
        lease: Lease,
        social: SocialSettings | None = None,
        zone: ZoneInfo = UTC_ZONE,
    ) -> None:
        collaborators = Collaborators(
            units, dispatcher, policy, registry, transport, clock, offline, memory, lease, zone
        )
        self.planning = Planning(collaborators)
        self.approvals = Approvals(collaborators)
        self.revisions = Revisions(collaborators, self.planning)
        self.edits = Edits(collaborators)
        self.execution = Executions(collaborators)
        self.control = Control(collaborators)
        self.recovery = Recovery(collaborators)
        self.compensation = Compensation(collaborators)
        self.memories = Memories(collaborators)
        self.snippets = Snippets(collaborators, social)
        self.voice = Voice(collaborators)
        self.scheduled_publishing = ScheduledPublishing(collaborators)
        self.dispatcher = dispatcher
        self.transport = transport
        self.clock = clock

    def register(self, bus: MessageBus) -> None:
        bus.on_command(HandleIntent, self.planning.handle_intent)
        bus.on_command(RequestBudget, self.planning.request_budget)
        bus.on_command(TakeOverRun, self.planning.escalations.take_over)
        bus.on_command(ProposeAction, self.planning.propose_action)
        bus.on_command(DecideApproval, self.approvals.decide_approval)
        bus.on_command(DecideRun, self.approvals.decide_run)
        bus.on_command(ReviseRejected, self.revisions.revise)
        bus.on_command(EditApproval, self.edits.edit)
        bus.on_command(SweepTimers, self.approvals.sweep)
        bus.on_command(PublishDuePosts, self.scheduled_publishing.publish_due)
        bus.on_command(ExecuteAction, self.execution.execute_action)
        bus.on_event(ActionAllowed, self.execution.execute_when_cleared)
        bus.on_event(ActionApproved, self.execution.execute_when_cleared)
        bus.on_event(ActionExecuted, self.execution.report_execution)
        bus.on_event(ActionExecuted, self.scheduled_publishing.confirm)  # after the Done it confirms
        bus.on_event(ActionExecuted, self.planning.resume_after_grant)
        bus.on_event(ActionFailed, self.execution.report_failure)
        bus.on_event(ActionFailed, self.compensation.compensate)
        bus.on_event(ActionExecuted, self.compensation.mark_compensated)
        bus.on_command(Recover, self.recovery.recover)
        bus.on_command(ReplanRun, self.planning.replan)
        bus.on_command(ReconcileExecution, self.execution.reconcile)
        bus.on_command(PauseAgent, self.control.pause)
        bus.on_command(ResumeAgent, self.control.resume)
        bus.on_event(AgentResumed, self.planning.continue_paused)
        bus.on_command(Remember, self.memories.remember)
        bus.on_command(Recall, self.memories.recall)
        bus.on_command(Forget, self.memories.forget)
        bus.on_event(ActionExecuted, self.memories.remember_outcome)
        bus.on_event(ActionExecuted, self.snippets.propose_after_publish)
        bus.on_event(ScheduledPostLive, self.snippets.propose_when_live)
        bus.on_command(ShowVoice, self.voice.show)
        bus.on_event(AgentResumed, self.execution.continue_paused)
