"""What every handler shares: its collaborators, and how it talks in a thread (best effort after a commit)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from functools import partial
from zoneinfo import ZoneInfo

import structlog

from agents.dates import UTC_ZONE, describe
from agents.dispatcher import Dispatcher
from connectors.actions import Action
from connectors.registry import ConnectorRegistry, params_hash
from policies.engine import Policy
from runtime.card_values import field_labels
from runtime.mrkdwn import escape, mentions
from runtime.notices import ApprovalCard, CardEdit, Notice, Thread
from runtime.transport import Transport, TransportError
from storage.action_edits import ActionEdits
from storage.ids import format_id
from storage.leases import Lease
from storage.memory import MemoryStore
from storage.records import (
    ActionEdit,
    Approval,
    Capability,
    Decision,
    Intent,
    ProposedAction,
    Run,
)
from storage.unit_of_work import UnitOfWorkFactory

log = structlog.get_logger(__name__)


# An approved action that has not run within this long (its agent paused, say) needs approving again.
CAPABILITY_LIFETIME = timedelta(days=1)


# What an approval's card shows besides the approval: its action, the policy decision that asked, the edits.
CardRows = tuple[ProposedAction, Decision, Sequence[ActionEdit]]


@dataclass(frozen=True)
class Collaborators:
    units: UnitOfWorkFactory
    dispatcher: Dispatcher
    policy: Policy
    registry: ConnectorRegistry
    transport: Transport
    clock: Callable[[], datetime]
    offline: bool  # planning without a model: say so once per thread
    memory: MemoryStore
    lease: Lease  # this process's: the work it takes on records it as the owner
    zone: ZoneInfo = UTC_ZONE  # the team's time zone (AIOS_TIMEZONE): how times are told


class HandlerBase:
    def __init__(self, collaborators: Collaborators) -> None:
        self.units = collaborators.units
        self.dispatcher = collaborators.dispatcher
        self.policy = collaborators.policy
        self.registry = collaborators.registry
        self.transport = collaborators.transport
        self.clock = collaborators.clock
        self.offline = collaborators.offline
        self.memory = collaborators.memory
        self.lease = collaborators.lease
        self.zone = collaborators.zone

    def _told_summary(self, action: Action) -> str:
        """The action's summary with its times in the team's zone, as people read them."""
        return action.summary_in(partial(describe, zone=self.zone))

    def _capability(self, proposed: ProposedAction, policy_hash: str, granted_by: str) -> Capability:
        """What lets this exact action run once, for a while; minted in the transaction that allowed it."""
        assert proposed.id is not None
        action = self.registry.validate(proposed.name, proposed.params)
        return Capability(
            action_id=proposed.id,
            action_name=action.name,
            params_hash=params_hash(action),
            policy_hash=policy_hash,
            granted_by=granted_by,
            expires_at=self.clock() + CAPABILITY_LIFETIME,
        )

    def _mention_roles(self, roles: Sequence[str]) -> str:
        """Slack mentions of everyone listed under these roles: users as <@U…>, user groups as <!subteam^S…>."""
        return mentions(self.policy.members_of(roles))

    async def _group_members(self) -> dict[str, set[str]]:
        return await group_members(self.policy, self.transport)

    async def _is_paused(self, agent: str) -> bool:
        async with self.units.read() as uow:
            return await uow.runs.is_paused(agent) is not None

    async def _open_thread(self, intent: Intent) -> Thread:
        """Slash-command intents have no thread yet: start one with a message that quotes the intent."""
        if intent.thread_ts is not None:
            return Thread(intent.channel, intent.thread_ts)
        asked = Notice(f"<@{intent.user}> asked: {escape(intent.text)}", f"`{format_id('I', intent.id)}`")
        ts = await self.transport.tell(Thread(intent.channel, None), asked)
        async with self.units() as uow:
            stored = await uow.get(Intent, intent.id)
            assert stored is not None
            stored.thread_ts = ts
            uow.session.add(stored)
            await uow.commit()
        intent.thread_ts = ts
        return Thread(intent.channel, ts)

    async def _say(self, thread: Thread, text: str, *, context: str | None = None) -> None:
        """Reply in the thread; ``text`` and ``context`` are mrkdwn, with what others wrote already escaped."""
        try:
            await self.transport.tell(thread, Notice(text, context))
        except TransportError as exc:
            log.error("reply_not_delivered", channel=thread.channel, thread=thread.ts, error=str(exc))

    async def _whisper(self, channel: str, user: str, text: str, *, thread_ts: str | None = None) -> None:
        try:
            await self.transport.post_ephemeral(channel, user, text, thread_ts=thread_ts)
        except TransportError as exc:
            log.error("ephemeral_not_delivered", channel=channel, user=user, error=str(exc))

    async def _get_decision(self, decision_id: int) -> Decision:
        async with self.units() as uow:
            decision = await uow.get(Decision, decision_id)
        assert decision is not None
        return decision

    async def _thread_of_action(self, action_id: int) -> tuple[Thread, ProposedAction]:
        async with self.units() as uow:
            proposed = await uow.get(ProposedAction, action_id)
            assert proposed is not None
            run = await uow.get(Run, proposed.run_id)
            assert run is not None
            intent = await uow.get(Intent, run.intent_id)
            assert intent is not None
        return Thread(intent.channel, intent.thread_ts), proposed

    async def _close_card(
        self, approval: Approval, outcome: str, actor: str | None, at: datetime, rows: CardRows | None = None
    ) -> None:
        """Replace the buttons of an approval request by its outcome (``rows``: what it shows, if read)."""
        if approval.message_ts is None:
            return
        card = self._card(approval, *rows) if rows is not None else await self._stored_card(approval)
        try:
            await self.transport.settle_approval(
                approval.channel, approval.message_ts, card, outcome, actor, at
            )
        except TransportError as exc:
            log.error("approval_update_not_delivered", approval=approval.id, error=str(exc))

    async def _show_votes(self, approval: Approval, voters: list[str], rows: CardRows | None = None) -> None:
        """An approval that needs more approvers keeps its buttons and shows who approved so far."""
        card = self._card(approval, *rows) if rows is not None else await self._stored_card(approval)
        await self._redraw_card(approval, replace(card, voters=tuple(voters)))

    async def _post_card(self, approval_id: int, card: ApprovalCard, thread: Thread) -> None:
        """Post an approval request and remember its message, so a decision can update it later."""
        try:
            ts = await self.transport.ask_approval(thread, card)
        except TransportError as exc:
            # The request stays pending and is listed by `/aios pending`; nothing runs without a decision.
            log.error("approval_request_not_delivered", approval=approval_id, error=str(exc))
            return
        async with self.units() as uow:
            await uow.approvals.show_approval_at(approval_id, ts)
            await uow.commit()

    async def _stored_card(self, approval: Approval) -> ApprovalCard:
        async with self.units() as uow:
            proposed = await uow.get(ProposedAction, approval.action_id)
            decision = await uow.get(Decision, approval.decision_id)
            edits = await ActionEdits(uow.session).applied_to(approval.action_id)
        assert proposed is not None and decision is not None
        return self._card(approval, proposed, decision, edits)

    async def _redraw_card(self, approval: Approval, card: ApprovalCard) -> None:
        """The request, still waiting, shown again on its message."""
        if approval.message_ts is None:
            return
        try:
            await self.transport.update_approval(approval.channel, approval.message_ts, card)
        except TransportError as exc:
            log.error("approval_update_not_delivered", approval=approval.id, error=str(exc))

    def _card(
        self,
        approval: Approval,
        proposed: ProposedAction,
        decision: Decision,
        edits: Sequence[ActionEdit] = (),
    ) -> ApprovalCard:
        return approval_card(
            approval, proposed, decision, edits, registry=self.registry, policy=self.policy, zone=self.zone
        )


async def group_members(policy: Policy, transport: Transport) -> dict[str, set[str]]:
    """Members of the user groups (S…) the policy's roles name, so a role held through a group counts.
    A group that cannot be looked up counts as empty: nobody gains a role from it."""
    members: dict[str, set[str]] = {}
    for group in sorted(policy.group_ids()):
        try:
            members[group] = await transport.group_members(group)
        except TransportError as exc:
            log.warning("group_members_unavailable", group=group, error=str(exc))
    return members


def approval_card(
    approval: Approval,
    proposed: ProposedAction,
    decision: Decision,
    edits: Sequence[ActionEdit] = (),
    *,
    registry: ConnectorRegistry,
    policy: Policy,
    zone: ZoneInfo,
) -> ApprovalCard:
    """What an approval request shows: its action as the registry validates it, with its times in ``zone``,
    the policy decision that asked, who may decide (mentioned), and the edits applied."""
    action = registry.validate(proposed.name, proposed.params)
    return ApprovalCard(
        approval_id=format_id("AP", approval.id),
        action_id=format_id("A", proposed.id),
        decision_id=format_id("D", decision.id),
        summary=action.summary_in(partial(describe, zone=zone)),
        params=proposed.params,
        rationale=proposed.rationale,
        rule_id=decision.rule_id or "default",
        reason=decision.reason,
        approver_roles=tuple(approval.approver_roles),
        approver_mentions=mentions(policy.members_of(approval.approver_roles)),
        requester=approval.requester,
        expires_at=approval.expires_at,
        quorum=approval.quorum,
        labels=field_labels(type(action)),
        zone=zone,
        edits=tuple(card_edit(edit) for edit in edits),
    )


def card_edit(edit: ActionEdit) -> CardEdit:
    """What a card shows of an applied edit: who, and each changed parameter before and after."""
    before, after = edit.params_before or {}, edit.params_after
    return CardEdit(edit.user, tuple((name, before.get(name), after.get(name)) for name in edit.changed))
