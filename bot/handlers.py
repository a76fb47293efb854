"""The service layer: what happens to an intent, an approval click and an approved action.

Each handler does its reads and writes in units of work and talks to people through the transport.
Long waits (planning, connectors, Slack) happen outside any open transaction.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime

import stamina
import structlog

from agents.agents import DISPATCHER, Dispatcher, PlanRequest
from agents.budgets import BudgetExceededError
from agents.context import thread_messages
from agents.llm import CallContext, LLMError
from agents.llm import Message as LLMMessage
from bot import blocks
from bot.messagebus import Message, MessageBus
from bot.messages import (
    ActionAllowed,
    ActionApproved,
    ActionExecuted,
    ActionFailed,
    DecideApproval,
    ExecuteAction,
    HandleIntent,
    RequestBudget,
)
from bot.observability import DECISIONS, EXECUTIONS
from bot.transport import Transport, TransportError
from connectors.actions import Action
from connectors.budget import BudgetGrant
from connectors.errors import ConnectorError, InvalidActionError, TransientConnectorError
from connectors.registry import ConnectorRegistry, idempotency_key
from policies.approvers import ApprovalRequestView, Refusal, authorise_approval, group_ids
from policies.engine import Policy, PolicyVerdict
from storage.ids import format_id
from storage.records import (
    ActionStatus,
    Approval,
    ApprovalStatus,
    Decision,
    Execution,
    ExecutionStatus,
    Intent,
    IntentStatus,
    ProposedAction,
    Run,
    RunStatus,
    utcnow,
)
from storage.repository import Repository
from storage.unit_of_work import UnitOfWorkFactory

log = structlog.get_logger(__name__)

CONNECTOR_TIMEOUT_SECONDS = 30.0
CONNECTOR_ATTEMPTS = 3

REFUSAL_TEXT = {
    Refusal.ALREADY_DECIDED: "{approval} was already decided, so your click changed nothing.",
    Refusal.EXPIRED: "{approval} has expired; ask for the action again if it is still needed.",
    Refusal.SELF_APPROVAL: "You asked for this, and rule `{rule}` does not let the requester approve it. "
    "Someone else with the {roles} role has to approve.",
    Refusal.NOT_AN_APPROVER: "Only the {roles} role can decide {approval}, and you don't have it.",
}


@dataclass(frozen=True)
class Thread:
    channel: str
    ts: str | None


class Handlers:
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
    ) -> None:
        self.units = units
        self.dispatcher = dispatcher
        self.policy = policy
        self.registry = registry
        self.transport = transport
        self.clock = clock
        self.offline = offline

    def register(self, bus: MessageBus) -> None:
        bus.on_command(HandleIntent, self.handle_intent)
        bus.on_command(DecideApproval, self.decide_approval)
        bus.on_command(ExecuteAction, self.execute_action)
        bus.on_event(ActionAllowed, self.execute_when_cleared)
        bus.on_event(ActionApproved, self.execute_when_cleared)
        bus.on_command(RequestBudget, self.request_budget)
        bus.on_event(ActionExecuted, self.report_execution)
        bus.on_event(ActionExecuted, self.resume_after_grant)
        bus.on_event(ActionFailed, self.report_failure)

    # --- intents -------------------------------------------------------------------------------

    async def handle_intent(self, command: HandleIntent) -> Sequence[Message]:
        async with self.units() as uow:
            intent = await uow.repo.get(Intent, command.intent_id)
            if intent is None or intent.status != IntentStatus.RECEIVED:
                return []  # already handled: a redelivery or a recovery pass
        assert intent.id is not None
        thread = await self._open_thread(intent)
        run_id = await self._start_run(intent)
        if run_id is None:
            return []  # another worker took this intent first
        await self._offline_notice(thread)
        return await self._route_and_plan(intent, thread, run_id)

    async def _route_and_plan(self, intent: Intent, thread: Thread, run_id: int) -> Sequence[Message]:
        """Pick the agent (unless the run has one), plan, and put the proposals to the policy.

        Used for a new intent and to resume a run that a budget grant unblocked."""
        assert intent.id is not None
        async with self.units() as uow:
            run = await uow.repo.get(Run, run_id)
        assert run is not None
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
        try:
            if run.agent == DISPATCHER:
                agent = await self.dispatcher.route(intent.text, call, history)
                if agent is None:
                    await self._finish_run(run_id, RunStatus.ANSWERED, "no agent fits this request")
                    await self._say(thread, self._help_text(), context=ids)
                    return []
                await self._set_run_agent(run_id, agent.name)
            else:
                agent = self.dispatcher.agents[run.agent]
            plan = await agent.plan(
                PlanRequest(
                    text=intent.text,
                    requester=intent.user,
                    call=replace(call, agent=agent.name),
                    history=history,
                )
            )
        except BudgetExceededError as exc:
            await self._over_budget(thread, run_id, exc)
            return []
        except LLMError as exc:
            await self._finish_run(run_id, RunStatus.FAILED, f"planning failed: {exc}")
            await self._model_failed(thread, exc, ids)
            return []
        ids = f"{agent.name} agent · {ids}"
        if not plan.actions:
            await self._finish_run(run_id, RunStatus.ANSWERED, plan.rationale)
            text = plan.rationale or "I have nothing to propose for that."
            if plan.problems:
                text += "\n" + "\n".join(f"• {problem}" for problem in plan.problems)
            await self._say(thread, text, context=ids)
            return []
        await self._finish_run(run_id, RunStatus.PLANNING, plan.rationale)
        return await self._propose(intent, thread, run_id, plan.actions, plan.rationale)

    async def _start_run(self, intent: Intent) -> int | None:
        assert intent.id is not None
        async with self.units() as uow:
            if not await uow.repo.claim_intent(intent.id):
                return None
            run = await uow.repo.add(Run(intent_id=intent.id, agent=DISPATCHER))
            await uow.commit()
        return run.id

    async def _set_run_agent(self, run_id: int, agent: str) -> None:
        async with self.units() as uow:
            run = await uow.repo.get(Run, run_id)
            assert run is not None
            run.agent = agent
            uow.repo.session.add(run)
            await uow.commit()

    async def _finish_run(
        self, run_id: int, status: RunStatus, rationale: str, *, budget_account: str | None = None
    ) -> None:
        async with self.units() as uow:
            run = await uow.repo.get(Run, run_id)
            assert run is not None
            run.status, run.rationale, run.updated_at = status, rationale, utcnow()
            run.budget_account = budget_account
            uow.repo.session.add(run)
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

    async def _over_budget(self, thread: Thread, run_id: int, exc: BudgetExceededError) -> None:
        """Stop before the call, say why, and offer to ask for more; a grant resumes the run."""
        await self._finish_run(run_id, RunStatus.OVER_BUDGET, str(exc), budget_account=exc.account.key)
        text, message_blocks = blocks.budget_blocked(
            format_id("R", run_id), f"I stopped before calling the model: {exc}."
        )
        try:
            await self.transport.post(thread.channel, text, blocks=message_blocks, thread_ts=thread.ts)
        except TransportError as exc_:
            log.error("budget_notice_not_delivered", run=run_id, error=str(exc_))

    async def request_budget(self, command: RequestBudget) -> Sequence[Message]:
        """Someone pressed "Request budget": put a grant to the budget's approvers, as a gated action."""
        run_ref = format_id("R", command.run_id)
        async with self.units() as uow:
            run = await uow.repo.get(Run, command.run_id)
            intent = await uow.repo.get(Intent, run.intent_id) if run else None
            first = False
            if run is not None and run.status == RunStatus.OVER_BUDGET and run.budget_account:
                first = await uow.repo.first_time(f"budget-request:{run.id}:{run.budget_account}")
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
        rationale = f"<@{command.user}> asked for more budget so that {run_ref} can continue."
        return await self._propose(intent, thread, command.run_id, [grant], rationale)

    async def resume_after_grant(self, event: ActionExecuted) -> Sequence[Message]:
        """A budget grant went through: the run it unblocks plans again from where it stopped."""
        async with self.units() as uow:
            action = await uow.repo.get(ProposedAction, event.action_id)
            if action is None or action.name != BudgetGrant.name:
                return []
            run = await uow.repo.get(Run, action.run_id)
            intent = await uow.repo.get(Intent, run.intent_id) if run else None
        if run is None or intent is None or run.budget_account != action.params.get("account"):
            return []
        assert run.id is not None
        await self._finish_run(run.id, RunStatus.PLANNING, run.rationale)
        return await self._route_and_plan(intent, Thread(intent.channel, intent.thread_ts), run.id)

    def _judge(self, action: Action, requester: str, totals: dict[str, float]) -> PolicyVerdict:
        if isinstance(action, BudgetGrant):
            return self.policy.evaluate_budget_grant(action.budget_id)
        params = action.model_dump(mode="json")
        amount = params.get("amount")
        totals[action.name] = totals.get(action.name, 0.0) + (
            float(amount) if isinstance(amount, int | float) else 0
        )
        return self.policy.evaluate(action.name, params, requester, totals)

    async def _offline_notice(self, thread: Thread) -> None:
        """Say once per thread that planning is offline, so nobody mistakes the grammar for a model."""
        if not self.offline:
            return
        async with self.units() as uow:
            first = await uow.repo.first_time(f"offline-notice:{thread.channel}:{thread.ts}")
            await uow.commit()
        if first:
            await self._say(
                thread,
                "I'm in offline mode (no `ANTHROPIC_API_KEY` is set), so I plan with a small fixed grammar "
                "rather than a model. `/aios help` shows what I understand.",
            )

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
        self, intent: Intent, thread: Thread, run_id: int, actions: Sequence[Action], rationale: str
    ) -> Sequence[Message]:
        followups: list[Message] = []
        replies: list[tuple[str, str]] = []
        cards: list[tuple[int, blocks.ApprovalCard]] = []
        async with self.units() as uow:
            run = await uow.repo.get(Run, run_id)
            assert run is not None and run.id is not None
            totals: dict[str, float] = {}
            for action in actions:
                proposed = await uow.repo.add(
                    ProposedAction(
                        run_id=run.id,
                        name=action.name,
                        params=action.model_dump(mode="json"),
                        rationale=rationale,
                    )
                )
                assert proposed.id is not None
                verdict = self._judge(action, intent.user, totals)
                decision = await uow.repo.add(
                    Decision(
                        action_id=proposed.id,
                        kind="policy",
                        verdict=verdict.verdict,
                        rule_id=verdict.rule_id,
                        policy_hash=verdict.policy_hash,
                        reason=verdict.explanation,
                        justification=rationale,
                        actor="policy",
                    )
                )
                DECISIONS.labels(verdict=verdict.verdict).inc()
                ids = f"`{format_id('A', proposed.id)}` · `{format_id('D', decision.id)}` · rule `{verdict.rule_id}`"
                if verdict.verdict == "allow":
                    proposed.status = ActionStatus.APPROVED
                    followups.append(ActionAllowed(proposed.id))
                    replies.append((f"Allowed by policy: {action.summary()}. Running it now.", ids))
                elif verdict.verdict == "deny":
                    proposed.status = ActionStatus.DENIED
                    replies.append(
                        (f":no_entry: Not allowed: {action.summary()}. {verdict.explanation}.", ids)
                    )
                else:
                    proposed.status = ActionStatus.AWAITING_APPROVAL
                    approval = await self._request_approval(
                        uow.repo, proposed, decision, intent, thread, verdict
                    )
                    assert approval.id is not None
                    cards.append((approval.id, self._card(approval, proposed, decision)))
                uow.repo.session.add(proposed)
            await uow.repo.refresh_run_status(run.id)
            await uow.commit()
        log.info("actions_proposed", intent=intent.id, run=run.id, agent=run.agent, actions=len(actions))
        for text, context in replies:
            await self._say(thread, text, context=context)
        for approval_id, card in cards:
            text, message_blocks = blocks.approval_request(card)
            try:
                ts = await self.transport.post(
                    thread.channel, text, blocks=message_blocks, thread_ts=thread.ts
                )
            except TransportError as exc:
                # The request stays pending and is listed by `/aios pending`; nothing runs without a decision.
                log.error("approval_request_not_delivered", approval=approval_id, error=str(exc))
                continue
            async with self.units() as uow:
                stored = await uow.repo.get(Approval, approval_id)
                assert stored is not None
                stored.message_ts = ts
                uow.repo.session.add(stored)
                await uow.commit()
        return followups

    async def _request_approval(
        self,
        repo: Repository,
        proposed: ProposedAction,
        decision: Decision,
        intent: Intent,
        thread: Thread,
        verdict: PolicyVerdict,
    ) -> Approval:
        assert proposed.id is not None and decision.id is not None
        expires_at = self.clock() + verdict.timeout if verdict.timeout else None
        return await repo.add(
            Approval(
                action_id=proposed.id,
                decision_id=decision.id,
                approver_roles=list(verdict.approver_roles),
                forbid_self_approval=verdict.forbid_self_approval,
                requester=intent.user,
                channel=thread.channel,
                thread_ts=thread.ts,
                expires_at=expires_at,
            )
        )

    # --- approvals -----------------------------------------------------------------------------

    async def decide_approval(self, command: DecideApproval) -> Sequence[Message]:
        approval_ref = format_id("AP", command.approval_id)
        async with self.units() as uow:
            approval = await uow.repo.get(Approval, command.approval_id)
        if approval is None:
            await self._whisper(command.channel, command.user, f"There is no approval {approval_ref}.")
            return []
        policy_decision = await self._get_decision(approval.decision_id)
        roles = self.policy.roles
        groups = {g: await self.transport.group_members(g) for g in group_ids(roles, approval.approver_roles)}
        now = self.clock()
        view = ApprovalRequestView(
            status=approval.status,
            requester=approval.requester,
            approver_roles=tuple(approval.approver_roles),
            forbid_self_approval=approval.forbid_self_approval,
            expires_at=approval.expires_at,
        )
        refusal = authorise_approval(
            view, command.user, approve=command.approve, roles=roles, group_members=groups, now=now
        )
        if refusal is Refusal.EXPIRED:
            await self._expire(approval, now)
        if refusal is not None:
            await self._refuse(approval, command, refusal, policy_decision.rule_id or "default")
            return []

        outcome = ApprovalStatus.APPROVED if command.approve else ApprovalStatus.REJECTED
        async with self.units() as uow:
            if not await uow.repo.decide_approval(approval.id or 0, outcome, command.user, now):
                won = False
            else:
                won = True
                await uow.repo.set_action_status(
                    approval.action_id, ActionStatus.APPROVED if command.approve else ActionStatus.REJECTED
                )
                await uow.repo.add(
                    Decision(
                        action_id=approval.action_id,
                        kind="human",
                        verdict=outcome.value,
                        rule_id=policy_decision.rule_id,
                        policy_hash=policy_decision.policy_hash,
                        justification=f"{outcome.value} in Slack by <@{command.user}>",
                        actor=command.user,
                    )
                )
                await uow.commit()
        if not won:
            # Another click won the compare-and-set between our read and our write.
            await self._refuse(
                approval, command, Refusal.ALREADY_DECIDED, policy_decision.rule_id or "default"
            )
            return []
        DECISIONS.labels(verdict=outcome.value).inc()
        log.info("approval_decided", approval=approval.id, outcome=outcome.value, user=command.user)
        await self._close_card(approval, outcome.value, command.user, now)
        if command.approve:
            return [ActionApproved(approval.action_id)]
        await self._say(
            Thread(approval.channel, approval.thread_ts),
            f":no_entry_sign: <@{command.user}> rejected {approval_ref}; nothing was done.",
            context=f"`{format_id('A', approval.action_id)}`",
        )
        return []

    async def _refuse(
        self, approval: Approval, command: DecideApproval, refusal: Refusal, rule_id: str
    ) -> None:
        text = REFUSAL_TEXT[refusal].format(
            approval=format_id("AP", approval.id), rule=rule_id, roles=" or ".join(approval.approver_roles)
        )
        async with self.units() as uow:
            await uow.repo.add(
                Decision(
                    action_id=approval.action_id,
                    kind="refusal",
                    verdict=f"refused:{refusal.value}",
                    rule_id=rule_id,
                    reason=text,
                    actor=command.user,
                )
            )
            await uow.commit()
        DECISIONS.labels(verdict="refused").inc()
        await self._whisper(approval.channel, command.user, text, thread_ts=approval.thread_ts)

    async def _expire(self, approval: Approval, now: datetime) -> None:
        async with self.units() as uow:
            if not await uow.repo.decide_approval(approval.id or 0, ApprovalStatus.EXPIRED, "clock", now):
                return
            await uow.repo.set_action_status(approval.action_id, ActionStatus.EXPIRED)
            await uow.repo.add(
                Decision(
                    action_id=approval.action_id,
                    kind="expiry",
                    verdict="expired",
                    actor="clock",
                    reason="nobody decided before the rule's timeout",
                )
            )
            await uow.commit()
        await self._close_card(approval, "expired", None, now)

    # --- execution -----------------------------------------------------------------------------

    async def execute_when_cleared(self, event: ActionAllowed | ActionApproved) -> Sequence[Message]:
        return [ExecuteAction(event.action_id)]

    async def execute_action(self, command: ExecuteAction) -> Sequence[Message]:
        async with self.units() as uow:
            proposed = await uow.repo.get(ProposedAction, command.action_id)
            assert proposed is not None
            if proposed.status != ActionStatus.APPROVED:
                return []
            try:
                action = self.registry.validate(proposed.name, proposed.params)
            except InvalidActionError as exc:
                return [ActionFailed(command.action_id, str(exc))]
            key = idempotency_key(command.action_id, action)
            # Claim the key: of any number of concurrent executions of this action, one inserts the row.
            claimed = await uow.repo.insert_if_absent(
                Execution,
                {
                    "action_id": command.action_id,
                    "idempotency_key": key,
                    "status": ExecutionStatus.STARTED,
                    "result": {},
                    "started_at": self.clock(),
                },
            )
            await uow.commit()
        if not claimed:
            log.info("execution_already_claimed", action=command.action_id)
            return []
        try:
            # A timeout is retried too: the same idempotency key makes a repeat of a call that did land harmless.
            async for attempt in stamina.retry_context(
                on=(TransientConnectorError, TimeoutError), attempts=CONNECTOR_ATTEMPTS
            ):
                with attempt:
                    async with asyncio.timeout(CONNECTOR_TIMEOUT_SECONDS):
                        result = await self.registry.execute(action, key)
        except (ConnectorError, TimeoutError) as exc:
            error = str(exc) or type(exc).__name__
            execution = await self._finish_execution(key, ExecutionStatus.FAILED, {}, error)
            EXECUTIONS.labels(outcome="failed").inc()
            return [ActionFailed(command.action_id, error)]
        execution = await self._finish_execution(key, ExecutionStatus.SUCCEEDED, result, None)
        EXECUTIONS.labels(outcome="succeeded").inc()
        assert execution.id is not None
        return [ActionExecuted(command.action_id, execution.id)]

    async def _finish_execution(
        self, key: str, status: ExecutionStatus, result: dict[str, object], error: str | None
    ) -> Execution:
        async with self.units() as uow:
            execution = await uow.repo.execution_by_key(key)
            assert execution is not None
            execution.status = status
            execution.result = result
            execution.error = error
            execution.finished_at = self.clock()
            uow.repo.session.add(execution)
            succeeded = status == ExecutionStatus.SUCCEEDED
            await uow.repo.set_action_status(
                execution.action_id, ActionStatus.EXECUTED if succeeded else ActionStatus.FAILED
            )
            await uow.commit()
            return execution

    async def report_execution(self, event: ActionExecuted) -> Sequence[Message]:
        thread, proposed = await self._thread_of_action(event.action_id)
        async with self.units() as uow:
            execution = await uow.repo.get(Execution, event.execution_id)
        assert execution is not None
        action = self.registry.validate(proposed.name, proposed.params)
        details = ", ".join(f"{k}: {v}" for k, v in execution.result.items() if k != "replayed")
        await self._say(
            thread,
            f":white_check_mark: Done: {action.summary()}. ({details})",
            context=f"`{format_id('E', execution.id)}` · `{format_id('A', proposed.id)}` · "
            f"`/aios why {format_id('A', proposed.id)}` explains it",
        )
        return []

    async def report_failure(self, event: ActionFailed) -> Sequence[Message]:
        thread, proposed = await self._thread_of_action(event.action_id)
        await self._say(
            thread,
            f":x: {proposed.name} failed: {event.error}. Nothing was changed by this attempt.",
            context=f"`{format_id('A', proposed.id)}`",
        )
        return []

    # --- helpers -------------------------------------------------------------------------------

    async def _open_thread(self, intent: Intent) -> Thread:
        """Slash-command intents have no thread yet: start one with a message that quotes the intent."""
        if intent.thread_ts is not None:
            return Thread(intent.channel, intent.thread_ts)
        ts = await self.transport.post(
            intent.channel,
            f"<@{intent.user}> asked: {intent.text}",
            blocks=blocks.notice(f"<@{intent.user}> asked: {intent.text}", f"`{format_id('I', intent.id)}`")[
                1
            ],
        )
        async with self.units() as uow:
            stored = await uow.repo.get(Intent, intent.id)
            assert stored is not None
            stored.thread_ts = ts
            uow.repo.session.add(stored)
            await uow.commit()
        intent.thread_ts = ts
        return Thread(intent.channel, ts)

    # Messages sent after a commit are best effort: the records are already right, and a chat outage
    # must not stop an approved action from running or leave a handler half done.

    async def _say(self, thread: Thread, text: str, *, context: str | None = None) -> None:
        fallback, message_blocks = blocks.notice(text, context)
        try:
            await self.transport.post(thread.channel, fallback, blocks=message_blocks, thread_ts=thread.ts)
        except TransportError as exc:
            log.error("reply_not_delivered", channel=thread.channel, thread=thread.ts, error=str(exc))

    async def _whisper(self, channel: str, user: str, text: str, *, thread_ts: str | None = None) -> None:
        try:
            await self.transport.post_ephemeral(channel, user, text, thread_ts=thread_ts)
        except TransportError as exc:
            log.error("ephemeral_not_delivered", channel=channel, user=user, error=str(exc))

    async def _get_decision(self, decision_id: int) -> Decision:
        async with self.units() as uow:
            decision = await uow.repo.get(Decision, decision_id)
        assert decision is not None
        return decision

    async def _thread_of_action(self, action_id: int) -> tuple[Thread, ProposedAction]:
        async with self.units() as uow:
            proposed = await uow.repo.get(ProposedAction, action_id)
            assert proposed is not None
            run = await uow.repo.get(Run, proposed.run_id)
            assert run is not None
            intent = await uow.repo.get(Intent, run.intent_id)
            assert intent is not None
        return Thread(intent.channel, intent.thread_ts), proposed

    async def _close_card(self, approval: Approval, outcome: str, actor: str | None, at: datetime) -> None:
        if approval.message_ts is None:
            return
        async with self.units() as uow:
            proposed = await uow.repo.get(ProposedAction, approval.action_id)
            decision = await uow.repo.get(Decision, approval.decision_id)
        assert proposed is not None and decision is not None
        card = self._card(approval, proposed, decision)
        text, message_blocks = blocks.approval_closed(card, outcome, actor, at)
        try:
            await self.transport.update(approval.channel, approval.message_ts, text, blocks=message_blocks)
        except TransportError as exc:
            log.error("approval_update_not_delivered", approval=approval.id, error=str(exc))

    def _card(self, approval: Approval, proposed: ProposedAction, decision: Decision) -> blocks.ApprovalCard:
        action = self.registry.validate(proposed.name, proposed.params)
        return blocks.ApprovalCard(
            approval_id=format_id("AP", approval.id),
            action_id=format_id("A", proposed.id),
            decision_id=format_id("D", decision.id),
            summary=action.summary(),
            params=proposed.params,
            rationale=proposed.rationale,
            rule_id=decision.rule_id or "default",
            reason=decision.reason,
            approver_roles=tuple(approval.approver_roles),
            requester=approval.requester,
            expires_at=approval.expires_at,
        )

    def _help_text(self) -> str:
        return (
            "I didn't catch which agent should handle that. I can do returns and refunds "
            "(`refund order 1001, $40, arrived broken`) and content "
            '(`draft a post titled "Spring lookbook"`, `publish post spring-lookbook`). '
            "`/aios help` lists the commands."
        )
