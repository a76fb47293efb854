"""Escalations: a planner that will not guess hands the run to the policy's default approvers in the thread.

The run waits (status ``escalated``). A reply in the thread that mentions the bot is the answer: it is planned
as a new run of the agent that asked, with the thread (the request, the question, the answer) as its history.
"Take over" closes the run instead: a person handles the request and the agent stops.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

import structlog

from agents.base import Escalation as EscalationAsked
from agents.dispatcher import DISPATCHER
from runtime.crashpoints import crash_point
from runtime.handlers.base import HandlerBase
from runtime.messagebus import Message
from runtime.messages import TakeOverRun
from runtime.mrkdwn import mentions
from runtime.notices import EscalationMessage, Thread
from runtime.observability import ESCALATIONS
from runtime.transport import TransportError
from storage.escalations import Escalations as EscalationQueries
from storage.ids import format_id
from storage.records import Escalation, EscalationStatus, Intent, Run, RunStatus, utcnow
from storage.repositories.runs import ClaimedIntent
from storage.unit_of_work import UnitOfWork

log = structlog.get_logger(__name__)


class Escalations(HandlerBase):
    async def escalate(
        self,
        thread: Thread,
        run_id: int,
        agent: str,
        asked: EscalationAsked,
        *,
        rationale: str = "",
        memories: list[int] | None = None,
    ) -> None:
        """Record the escalation with the run's new status in one transaction, then ask in the thread."""
        people = list(self.policy.members_of(self.policy.document.default_approvers))
        async with self.units() as uow:
            run = await uow.get(Run, run_id)
            assert run is not None
            run.status, run.updated_at, run.owner = RunStatus.ESCALATED, utcnow(), self.lease.id
            run.agent = agent
            run.rationale = rationale or asked.reason
            if memories is not None:
                run.memories_used = memories
            uow.session.add(run)
            record = await uow.add(
                Escalation(
                    run_id=run_id,
                    agent=agent,
                    reason=asked.reason,
                    question=asked.question,
                    asked=people,
                    channel=thread.channel,
                    thread_ts=thread.ts,
                    created_at=self.clock(),
                )
            )
            await uow.commit()
        ESCALATIONS.labels(reason="no_agent_fits" if agent == DISPATCHER else "agent_unsure").inc()
        log.info("run_escalated", run=run_id, agent=agent, escalation=record.id)
        crash_point("escalation_recorded")
        await ask_in_thread(self, record)

    async def waiting_in_thread(self, uow: UnitOfWork, claimed: ClaimedIntent) -> Escalation | None:
        """The escalation a new request in its thread answers: the thread's newest one still waiting, as its claim
        found it (read only when there is one)."""
        if claimed.open_escalation is None:
            return None
        return await uow.session.get(Escalation, claimed.open_escalation)

    def answering_agent(self, waiting: Escalation | None) -> str:
        """The agent a run answering ``waiting`` goes to: the one that asked (the dispatcher routes it when no
        agent had fitted, or nothing was waiting)."""
        return (
            waiting.agent if waiting is not None and waiting.agent in self.dispatcher.agents else DISPATCHER
        )

    async def take_answer(
        self, uow: UnitOfWork, intent: Intent, waiting: Escalation, run: Run
    ) -> datetime | None:
        """A new request in a thread whose run waits for a person is the answer: in the transaction that starts
        ``run`` (made for :meth:`answering_agent`), the escalation is closed as answered by its author. Returns
        when, for :meth:`close_answered` once committed; None when it was answered or taken over a moment ago."""
        assert waiting.id is not None and run.id is not None
        now = self.clock()
        if waiting.run_id == run.id or not await EscalationQueries(uow.session).resolve(
            waiting.id, EscalationStatus.ANSWERED, intent.user, now, answer=intent.text, answer_run_id=run.id
        ):
            if run.agent != DISPATCHER:
                run.agent = DISPATCHER  # nothing answered: the request is routed as any other
                uow.session.add(run)
            return None
        escalated = await uow.get(Run, waiting.run_id)
        if escalated is not None:  # settled with its escalation, so it no longer counts as waiting
            escalated.status, escalated.updated_at = RunStatus.PERSON_ANSWERED, now
            uow.session.add(escalated)
        return now

    async def close_answered(self, waiting: Escalation, intent: Intent, run_id: int, at: datetime) -> None:
        log.info("escalation_answered", escalation=waiting.id, run=waiting.run_id, answer_run=run_id)
        await self._close_message(waiting, "answered", intent.user, at)

    async def take_over(self, command: TakeOverRun) -> Sequence[Message]:
        """Someone pressed "Take over": the run closes as theirs, if it still waits for a person."""
        run_ref = format_id("R", command.run_id)
        async with self.units() as uow:
            waiting = await EscalationQueries(uow.session).of_run(command.run_id)
            run = await uow.get(Run, command.run_id)
            intent = await uow.get(Intent, run.intent_id) if run else None
        if waiting is None or waiting.id is None or run is None or intent is None:
            await self._whisper(command.channel, command.user, f"{run_ref} is not waiting for a person.")
            return []
        if waiting.status != EscalationStatus.OPEN:
            await self._whisper(command.channel, command.user, self._already(run_ref, waiting))
            return []
        if not await self._may_take_over(command.user, intent):
            roles = ", ".join(self.policy.document.default_approvers)
            await self._whisper(
                command.channel,
                command.user,
                f"Only the requester or someone with the role {roles} can take over {run_ref}.",
            )
            return []
        now = self.clock()
        async with self.units() as uow:
            taken = await EscalationQueries(uow.session).resolve(
                waiting.id, EscalationStatus.TAKEN_OVER, command.user, now
            )
            if taken:
                run.status, run.updated_at = RunStatus.TAKEN_OVER, now
                uow.session.add(run)
                await uow.commit()
            else:
                waiting = await EscalationQueries(uow.session).of_run(command.run_id) or waiting
        if not taken:
            await self._whisper(command.channel, command.user, self._already(run_ref, waiting))
            return []
        log.info("run_taken_over", run=command.run_id, by=command.user)
        await self._close_message(waiting, "taken over", command.user, now)
        await self._say(
            Thread(waiting.channel, waiting.thread_ts),
            f":handshake: <@{command.user}> took this over, so I've stopped working on it.",
            context=f"`{run_ref}` · `/aios why {run_ref}`",
        )
        return []

    async def _may_take_over(self, user: str, intent: Intent) -> bool:
        if user == intent.user:
            return True
        if not set(self.policy.document.default_approvers) & set(self.policy.roles_of(user)):
            # Roles held through a user group need the group's members, asked of Slack only when needed.
            roles = self.policy.roles_of(user, await self._group_members())
            return bool(set(self.policy.document.default_approvers) & set(roles))
        return True

    @staticmethod
    def _already(run_ref: str, escalation: Escalation) -> str:
        how = "answered" if escalation.status == EscalationStatus.ANSWERED else "taken over"
        return f"{run_ref} was already {how} by <@{escalation.resolved_by}>."

    async def _close_message(self, escalation: Escalation, outcome: str, actor: str, at: datetime) -> None:
        if escalation.message_ts is None:
            return
        try:
            await self.transport.settle_escalation(
                escalation.channel, escalation.message_ts, _message(escalation), outcome, actor, at
            )
        except TransportError as exc:
            log.error("escalation_update_not_delivered", escalation=escalation.id, error=str(exc))


async def ask_in_thread(handler: HandlerBase, escalation: Escalation) -> None:
    """Post the escalation in its thread and remember the message, so that answering or taking it over can
    update it; at start, recovery posts those a stopped process recorded but never posted."""
    try:
        ts = await handler.transport.escalate(
            Thread(escalation.channel, escalation.thread_ts), _message(escalation)
        )
    except TransportError as exc:
        # The escalation stays open: `/aios why` shows it, and an answer in the thread still goes on.
        log.error("escalation_not_delivered", run=escalation.run_id, error=str(exc))
        return
    async with handler.units() as uow:
        stored = await uow.get(Escalation, escalation.id)
        assert stored is not None
        stored.message_ts = ts
        uow.session.add(stored)
        await uow.commit()


def _message(escalation: Escalation) -> EscalationMessage:
    return EscalationMessage(
        run_id=format_id("R", escalation.run_id),
        agent="no agent fits" if escalation.agent == DISPATCHER else f"{escalation.agent} agent",
        people=mentions(escalation.asked),
        reason=escalation.reason,
        question=escalation.question,
    )
