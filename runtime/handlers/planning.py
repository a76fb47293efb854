"""Intents become runs: the dispatcher picks an agent, the agent plans, the policy judges each proposal.

A run stopped by its budget waits for a grant, which is itself a gated action; the grant resumes it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

import structlog

from agents.base import Escalation, PlanRequest
from agents.budgets import BudgetExceededError
from agents.context import thread_messages
from agents.dispatcher import DISPATCHER
from agents.llm import CallContext, LLMError
from agents.llm import Message as LLMMessage
from connectors.actions import Action
from connectors.budget import BudgetGrant
from policies.engine import PolicyVerdict
from runtime.crashpoints import crash_point
from runtime.handlers.base import Collaborators, HandlerBase
from runtime.handlers.escalation import Escalations
from runtime.handlers.judging import Judged, approval_deadlines, judge, policy_decision
from runtime.handlers.run_review import RunReviews
from runtime.messagebus import Message
from runtime.messages import (
    ActionAllowed,
    ActionExecuted,
    AgentResumed,
    HandleIntent,
    ProposeAction,
    ReplanRun,
    RequestBudget,
)
from runtime.mrkdwn import escape
from runtime.notices import ApprovalCard, BudgetBlocked, Thread
from runtime.observability import DECISIONS
from runtime.revision_feedback import revision_feedback
from runtime.tracing import made_for_intent
from runtime.transport import TransportError
from storage.ids import format_id
from storage.records import (
    ActionStatus,
    Approval,
    Decision,
    Intent,
    IntentStatus,
    PolicyVersion,
    ProposedAction,
    Run,
    RunStatus,
    utcnow,
)
from storage.records import Escalation as EscalationRecord
from storage.unit_of_work import UnitOfWork, reading_together

log = structlog.get_logger(__name__)

OFFLINE_NOTICE = (
    "I'm in offline mode (no `ANTHROPIC_API_KEY` is set), so I plan with a small fixed grammar "
    "rather than a model. `/aios help` shows what I understand."
)
# The status an action is stored with, by the policy's verdict on it (any other verdict asks for approval).
VERDICT_STATUS = {"allow": ActionStatus.APPROVED, "deny": ActionStatus.DENIED}


@dataclass(frozen=True)
class _Started:
    """A run started for an intent just claimed, and what starting it settled."""

    intent: Intent
    run: Run
    # The escalation of the thread that this intent answered, and when.
    answered: tuple[EscalationRecord, datetime] | None
    offline_notice: bool  # the thread's first: say that planning is offline
    agents_paused: bool  # some agent was paused when the intent was claimed


class Planning(HandlerBase):
    def __init__(self, collaborators: Collaborators) -> None:
        super().__init__(collaborators)
        # Policy versions this process has stored (committed): one insert-if-absent per version, not per action.
        self._stored_policy_versions: set[str] = set()
        self.escalations = Escalations(collaborators)
        self.reviews = RunReviews(collaborators)

    async def handle_intent(self, command: HandleIntent) -> Sequence[Message]:
        """Plan the intent; when that fails, the intent is told failed in its thread (and the failure raised):
        whether it came straight from an ack, a worker's claim, or as a recovery sweep's follow-up — not left
        `received` under a live owner that no sweep hands back."""
        try:
            return await self._handle_intent(command)
        except Exception:
            await self._report_failed_intent(command.intent_id)
            raise

    async def _handle_intent(self, command: HandleIntent) -> Sequence[Message]:
        crash_point("intent_accepted")
        started = await self._start_run(command.intent_id)
        if started is None:
            async with self.units.read() as uow:
                waiting = await uow.get(Intent, command.intent_id)
            if waiting is None or waiting.status != IntentStatus.RECEIVED or waiting.thread_ts is not None:
                return []  # already handled: a redelivery, a recovery pass, or another worker took it first
            await self._open_thread(waiting)  # a slash command's intent: its thread starts here
            started = await self._start_run(command.intent_id)
            if started is None:
                return []  # another worker took this intent first
        intent, run = started.intent, started.run
        assert run.id is not None
        thread = Thread(intent.channel, intent.thread_ts)
        crash_point("run_started")
        if started.answered is not None:
            await self.escalations.close_answered(started.answered[0], intent, run.id, started.answered[1])
        if started.offline_notice:
            await self._say(thread, OFFLINE_NOTICE)
        return await self._route_and_plan(
            intent, thread, run.id, started=run, agents_paused=started.agents_paused
        )

    async def _report_failed_intent(self, intent_id: int) -> None:
        try:
            async with self.units() as uow:
                intent = await uow.get(Intent, intent_id)
                if intent is None:
                    return
                await uow.runs.fail_intent(intent_id)  # if it never got as far as a run
                for run in await uow.runs.runs_for_intent(intent_id):
                    if run.status == RunStatus.PLANNING:  # stopped mid-planning: it will not go on by itself
                        run.status = RunStatus.FAILED
                        uow.session.add(run)
                await uow.commit()
            await self.transport.post(
                intent.channel,
                f"Sorry, something went wrong while handling I-{intent_id}. The error is logged; "
                f"`/aios why I-{intent_id}` shows what was done, and you can ask again in a moment.",
                thread_ts=intent.thread_ts,
            )
        except Exception:
            log.exception("failure_report_failed", intent=intent_id)

    async def plan_run(self, intent: Intent, run_id: int) -> Sequence[Message]:
        """Plan a run of ``intent`` made elsewhere (a rejection's revision) and put its proposals to the policy."""
        return await self._route_and_plan(intent, Thread(intent.channel, intent.thread_ts), run_id)

    async def _route_and_plan(
        self,
        intent: Intent,
        thread: Thread,
        run_id: int,
        *,
        started: Run | None = None,
        agents_paused: bool = True,
    ) -> Sequence[Message]:
        """Pick the agent (unless the run has one), plan, and put the proposals to the policy.

        Used for a new intent (``started``: its run, just made), to resume a run that a budget grant unblocked or
        a crash stopped, and to revise a rejected action: a revision run is planned with its reason as feedback,
        each time it is planned. The agent's pause and what it reads before planning are read in one
        transaction, ended before each call to another system the agent's context makes (a shop, Stripe,
        Weaviate) and begun again after it; the run's agent is stored with whatever the planning comes to.
        ``agents_paused`` False: no agent was paused when the run started, so its agent's pause is not read (a
        pause that came later holds its actions before they execute, as it does for a run already planned)."""
        assert intent.id is not None
        if started is not None:
            run, feedback = started, None  # a run started just now revises nothing
        else:
            async with reading_together():
                async with self.units.read() as uow:
                    stored = await uow.get(Run, run_id)
                feedback = await revision_feedback(self.units, self.registry, self.zone, run_id)
            assert stored is not None
            run = stored
        history = await self._history(intent, thread)
        call = CallContext(
            intent_id=intent.id,
            agent=run.agent,
            requester=intent.user,
            channel=intent.channel,
            team_id=intent.team_id,
            run_id=run_id,
            thread_ts=thread.ts,
        )
        ids = f"`{format_id('R', run_id)}`"
        agent_name = run.agent
        try:
            if run.agent == DISPATCHER:
                agent = await self.dispatcher.route_or_escalate(intent.text, call, history)
                if isinstance(agent, Escalation):
                    await self.escalations.escalate(thread, run_id, DISPATCHER, agent)
                    return []
                if agent is None:
                    await self._update_run(run_id, RunStatus.ANSWERED, "no agent fits this request")
                    await self._say(thread, self._help_text(), context=ids)
                    return []
            else:
                agent = self.dispatcher.agents[run.agent]
            agent_name = agent.name
            request = PlanRequest(
                text=intent.text,
                requester=intent.user,
                call=replace(call, agent=agent.name),
                history=history,
                feedback=feedback,
            )
            async with reading_together():
                paused = agents_paused and await self._is_paused(agent.name)
                context = None if paused else await agent.context(request)
            if paused:
                await self._update_run(run_id, RunStatus.PAUSED, run.rationale, agent=agent.name)
                await self._say(
                    thread,
                    f":double_vertical_bar: The {agent.name} agent is paused; this waits until it is resumed.",
                    context=ids,
                )
                return []
            plan = await agent.plan(replace(request, context=context))
        except BudgetExceededError as exc:
            await self._over_budget(thread, run_id, exc, agent_name)
            return []
        except LLMError as exc:
            await self._update_run(
                run_id, RunStatus.FAILED, f"planning failed: {exc}", history=history, agent=agent_name
            )
            await self._model_failed(thread, exc, ids)
            return []
        ids = f"{agent.name} agent · {ids}"
        if plan.escalation is not None:
            await self.escalations.escalate(
                thread,
                run_id,
                agent.name,
                plan.escalation,
                rationale=plan.rationale,
                memories=plan.memory_ids,
            )
            return []
        if not plan.actions:
            await self._update_run(
                run_id,
                RunStatus.ANSWERED,
                plan.rationale,
                memories=plan.memory_ids,
                history=history,
                agent=agent.name,
            )
            text = escape(plan.rationale) or "I have nothing to propose for that."
            if plan.problems:
                text += "\n" + "\n".join(f"• {escape(problem)}" for problem in plan.problems)
            await self._say(thread, text, context=ids)
            return []
        planned = self._run_values(
            plan.rationale, memories=plan.memory_ids, history=history, agent=agent.name
        )
        return await self._propose(
            intent, thread, run_id, agent.name, plan.actions, plan.rationale, run=planned
        )

    async def _start_run(self, intent_id: int) -> _Started | None:
        """Claim the intent and start its run in one transaction, with what starting it settles: the escalation
        of the thread it answers, the thread's one offline notice. None when the intent has moved on (another
        worker took it) or has no thread yet."""
        async with self.units() as uow:
            claimed = await uow.runs.claim_intent_in_thread(intent_id)
            if claimed is None:
                return None
            intent = claimed.intent
            assert intent.id is not None
            waiting = await self.escalations.waiting_in_thread(uow, claimed)
            run = await uow.add(
                Run(intent_id=intent.id, agent=self.escalations.answering_agent(waiting), owner=self.lease.id)
            )
            answered_at = await self.escalations.take_answer(uow, intent, waiting, run) if waiting else None
            offline_notice = self.offline and await uow.first_time(
                f"offline-notice:{intent.channel}:{intent.thread_ts}"
            )
            await uow.commit()
        answered = (waiting, answered_at) if waiting is not None and answered_at is not None else None
        return _Started(intent, run, answered, offline_notice, claimed.agents_paused)

    def _run_values(
        self,
        rationale: str,
        *,
        budget_account: str | None = None,
        memories: list[int] | None = None,
        history: Sequence[LLMMessage] | None = None,
        agent: str | None = None,
    ) -> dict[str, Any]:
        """The columns that move a run on (its status aside); ``memories`` (those the agent was given, for
        `/aios why`), ``history`` (the thread as the agent was given it, for a model replay) and ``agent`` are
        kept when not given."""
        # Whoever moves a run on (resumes it, say) is the one working on it.
        values: dict[str, Any] = {
            "rationale": rationale,
            "updated_at": utcnow(),
            "owner": self.lease.id,
            "budget_account": budget_account,
        }
        if memories is not None:
            values["memories_used"] = memories
        if history is not None:
            values["history"] = [{"role": message.role, "text": message.text} for message in history]
        if agent is not None:
            values["agent"] = agent
        return values

    async def _update_run(
        self,
        run_id: int,
        status: RunStatus,
        rationale: str,
        *,
        budget_account: str | None = None,
        memories: list[int] | None = None,
        history: Sequence[LLMMessage] | None = None,
        agent: str | None = None,
    ) -> None:
        """Move a run on (see :meth:`_run_values`)."""
        values = self._run_values(
            rationale, budget_account=budget_account, memories=memories, history=history, agent=agent
        )
        async with self.units() as uow:
            await uow.runs.update_run(run_id, status=status, **values)
            await uow.commit()

    async def _model_failed(self, thread: Thread, exc: LLMError, context: str) -> None:
        if exc.transient:
            advice = (
                "even after retrying, so nothing was proposed or done. Please try again in a few minutes."
            )
        else:
            advice = "so nothing was proposed or done. The error is logged for whoever runs this bot."
        reason = exc.kind.replace("_", " ")
        await self._say(
            thread, f":warning: I couldn't get an answer from the model ({reason}), {advice}", context=context
        )

    async def _over_budget(self, thread: Thread, run_id: int, exc: BudgetExceededError, agent: str) -> None:
        """Stop before the call, say why, and offer to ask for more; a grant resumes the run."""
        await self._update_run(
            run_id, RunStatus.OVER_BUDGET, str(exc), budget_account=exc.account.key, agent=agent
        )
        blocked = BudgetBlocked(format_id("R", run_id), f"I stopped before calling the model: {exc}.")
        try:
            await self.transport.report_budget_blocked(thread, blocked)
        except TransportError as exc_:
            log.error("budget_notice_not_delivered", run=run_id, error=str(exc_))

    async def request_budget(self, command: RequestBudget) -> Sequence[Message]:
        """Someone pressed "Request budget": put a grant to the budget's approvers, as a gated action."""
        run_ref = format_id("R", command.run_id)
        async with self.units() as uow:
            run = await uow.get(Run, command.run_id)
            intent = await uow.get(Intent, run.intent_id) if run else None
            first = False
            if run is not None and run.status == RunStatus.OVER_BUDGET and run.budget_account:
                first = await uow.first_time(f"budget-request:{run.id}:{run.budget_account}")
                await uow.commit()
        if run is None or intent is None or run.status != RunStatus.OVER_BUDGET or not run.budget_account:
            await self._whisper(command.channel, command.user, f"{run_ref} is not waiting for budget.")
            return []
        if not first:
            await self._whisper(
                command.channel, command.user, f"More budget for {run_ref} was already requested."
            )
            return []
        budget_id = run.budget_account.split(":", 1)[0]
        budget = self.policy.budget(budget_id)
        if budget is None:
            await self._whisper(
                command.channel, command.user, f"The budget {budget_id} is no longer in the policy."
            )
            return []
        grant = BudgetGrant(budget_id=budget_id, account=run.budget_account, amount_usd=budget.grant)
        thread = Thread(intent.channel, intent.thread_ts)
        # Plain words: the approval card shows a rationale as written, so a mention here would not ping.
        rationale = f"{command.user} pressed Request budget so that {run_ref} can continue."
        return await self._propose(intent, thread, command.run_id, run.agent, [grant], rationale)

    async def propose_action(self, command: ProposeAction) -> Sequence[Message]:
        """An action proposed by an MCP client: no planning, the rest as for an agent's proposal (the policy's
        verdict, decisions, approvals and capabilities, the card in the intent's thread). The run belongs to
        the agent that offers the action, so pausing that agent holds it too."""
        action = self.registry.validate(command.action, command.params)
        async with self.units() as uow:
            intent = await uow.get(Intent, command.intent_id)
        if intent is None or intent.status != IntentStatus.RECEIVED:
            return []  # already handled
        try:
            thread = await self._open_thread(intent)
        except TransportError:
            # Nothing was proposed: the request ends here rather than waiting to be planned from its text.
            async with self.units() as uow:
                await uow.runs.fail_intent(command.intent_id)
                await uow.commit()
            raise
        async with self.units() as uow:
            if not await uow.runs.claim_intent(command.intent_id):
                return []  # another worker took it first
            run = await uow.add(
                Run(
                    intent_id=command.intent_id,
                    agent=command.agent,
                    rationale=command.rationale,
                    owner=self.lease.id,
                )
            )
            await uow.commit()
        assert run.id is not None
        return await self._propose(
            intent, thread, run.id, command.agent, [action], command.rationale, undoes=command.undoes
        )

    async def resume_after_grant(self, event: ActionExecuted) -> Sequence[Message]:
        """A budget grant went through: the run it unblocks plans again from where it stopped."""
        if event.action.name != BudgetGrant.name:
            return []
        async with self.units() as uow:
            action = await uow.get(ProposedAction, event.action_id)
            if action is None or action.name != BudgetGrant.name:
                return []
            run = await uow.get(Run, action.run_id)
            intent = await uow.get(Intent, run.intent_id) if run else None
        if run is None or intent is None or run.budget_account != action.params.get("account"):
            return []
        assert run.id is not None
        await self._update_run(run.id, RunStatus.PLANNING, run.rationale)
        return await self._route_and_plan(intent, Thread(intent.channel, intent.thread_ts), run.id)

    async def replan(self, command: ReplanRun) -> Sequence[Message]:
        """A run a crash stopped while planning (nothing proposed yet) plans again from the start."""
        async with self.units() as uow:
            run = await uow.get(Run, command.run_id)
            intent = await uow.get(Intent, run.intent_id) if run else None
            proposed = await uow.runs.actions_for_run(command.run_id) if run else []
        if run is None or intent is None or proposed or run.status != RunStatus.PLANNING:
            return []
        log.info("run_replanning", run=run.id)
        return await self._route_and_plan(intent, Thread(intent.channel, intent.thread_ts), command.run_id)

    async def continue_paused(self, event: AgentResumed) -> Sequence[Message]:
        """Runs that waited for their agent before planning plan now (those with actions: see Executions)."""
        followups: list[Message] = []
        async with self.units() as uow:
            runs = [
                (run, await uow.runs.actions_for_run(run.id or 0))
                for run in await uow.runs.paused_runs(event.agent)
            ]
            intents = {run.id: await uow.get(Intent, run.intent_id) for run, _ in runs}
        for run, actions in runs:
            intent = intents[run.id]
            if actions or intent is None or run.id is None:
                continue
            await self._update_run(run.id, RunStatus.PLANNING, run.rationale)
            followups += await self._route_and_plan(intent, Thread(intent.channel, intent.thread_ts), run.id)
        return followups

    async def _store_policy_version(self, uow: UnitOfWork) -> bool:
        """Keep the text of the policy in force, once; True when this transaction may have stored it."""
        if self.policy.hash in self._stored_policy_versions or not self.policy.text:
            return False
        await uow.insert_if_absent(
            PolicyVersion, {"hash": self.policy.hash, "text": self.policy.text, "first_seen_at": utcnow()}
        )
        return True

    async def _history(self, intent: Intent, thread: Thread) -> list[LLMMessage]:
        if thread.ts is None or intent.message_ts in (None, thread.ts):
            return []  # the intent starts its thread (or came by slash command): nothing came before it
        try:
            entries = await self.transport.thread_history(thread.channel, thread.ts)
        except TransportError as exc:
            log.warning("thread_history_unavailable", channel=thread.channel, error=str(exc))
            return []
        return thread_messages(entries, exclude_ts=intent.message_ts)

    async def _propose(
        self,
        intent: Intent,
        thread: Thread,
        run_id: int,
        agent: str,
        actions: Sequence[Action],
        rationale: str,
        *,
        undoes: int | None = None,
        run: dict[str, Any] | None = None,
    ) -> Sequence[Message]:
        """Judge each action and store it with its verdict (its decision, and the approval or capability the
        verdict asks for), and the run's new status (with ``run``: other columns moving it on), in one
        transaction."""
        followups: list[Message] = []
        replies: list[tuple[str, str]] = []
        cards: list[tuple[int, ApprovalCard]] = []
        group_members = await self._group_members()  # before the transaction: it may ask Slack
        async with self.units() as uow:
            storing_version = await self._store_policy_version(uow)
            judged: list[Judged] = []
            for action in actions:
                verdict, facts = await judge(
                    self.policy, self.clock, uow, action, intent.user, run_id, judged, group_members
                )
                judged.append((action, verdict.verdict))
                # Stored with the status its verdict gives it: judging does not look at the run's own actions.
                proposed = await uow.add(
                    ProposedAction(
                        run_id=run_id,
                        name=action.name,
                        params=action.model_dump(mode="json"),
                        rationale=rationale,
                        status=VERDICT_STATUS.get(verdict.verdict, ActionStatus.AWAITING_APPROVAL),
                        undoes_action_id=undoes,
                    )
                )
                assert proposed.id is not None
                decision = await uow.add(policy_decision(proposed.id, verdict, facts, rationale))
                DECISIONS.labels(verdict=verdict.verdict).inc()
                ids = f"`{format_id('A', proposed.id)}` · `{format_id('D', decision.id)}` · rule `{verdict.rule_id}`"
                if verdict.verdict == "allow":
                    await uow.approvals.mint_capability(
                        self._capability(proposed, verdict.policy_hash, "policy")
                    )
                    followups.append(ActionAllowed(proposed.id))
                    replies.append(
                        (f"Allowed by policy: {escape(self._told_summary(action))}. Running it now.", ids)
                    )
                elif verdict.verdict == "deny":
                    replies.append(
                        (
                            f":no_entry: Not allowed: {escape(self._told_summary(action))}. "
                            f"{escape(verdict.explanation)}.",
                            ids,
                        )
                    )
                else:
                    approval = await self._request_approval(uow, proposed, decision, intent, thread, verdict)
                    assert approval.id is not None
                    cards.append((approval.id, self._card(approval, proposed, decision)))
            await uow.runs.refresh_run_status(run_id, **(run or {}))
            await uow.commit()
        made_for_intent("run_id", run_id)
        for approval_id, _ in cards:
            made_for_intent("approval_id", approval_id)
        if storing_version:
            self._stored_policy_versions.add(self.policy.hash)
        log.info("actions_proposed", intent=intent.id, run=run_id, agent=agent, actions=len(actions))
        for text, context in replies:
            await self._say(thread, text, context=context)
        crash_point("actions_proposed")
        if len(cards) > 1:
            # Several requests at once (a month of planned posts, say) are one card with Approve all.
            await self.reviews.post(run_id, [approval_id for approval_id, _ in cards], thread)
            return followups
        for approval_id, card in cards:
            await self._post_card(approval_id, card, thread)
        return followups

    async def _request_approval(
        self,
        uow: UnitOfWork,
        proposed: ProposedAction,
        decision: Decision,
        intent: Intent,
        thread: Thread,
        verdict: PolicyVerdict,
    ) -> Approval:
        assert proposed.id is not None and decision.id is not None
        escalate_at, expires_at = approval_deadlines(self.clock(), verdict, proposed)
        return await uow.add(
            Approval(
                action_id=proposed.id,
                decision_id=decision.id,
                approver_roles=list(verdict.approver_roles),
                forbid_self_approval=verdict.forbid_self_approval,
                requester=intent.user,
                channel=thread.channel,
                thread_ts=thread.ts,
                quorum=verdict.quorum,
                escalate_to=list(verdict.escalate_to),
                escalate_at=escalate_at,
                expires_at=expires_at,
            )
        )

    def _help_text(self) -> str:
        return (
            "I didn't catch which agent should handle that. I can do returns and refunds "
            "(`refund order 1001, $40, arrived broken`) and content "
            '(`draft a post titled "Spring lookbook"`, `publish post spring-lookbook`). '
            "`/aios help` lists the commands."
        )
