"""Keeping each App Home current: drawn again from the records when what it shows may have changed (the events of
the bus, a decision clicked on the Home, and a timer every few seconds for what has no event: a new approval
request, an expiry, a pause, a budget), and published only when it differs from the Home published last."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta

import structlog

from bot.app_home import (
    FOR_OTHERS_SHOWN,
    RECENT_SHOWN,
    WAITING_SHOWN,
    Home,
    SharedFacts,
    approvals_for,
    home_view,
    read_shared,
    view_hash,
)
from bot.blocks import ApprovalCard
from bot.handlers.base import Collaborators, HandlerBase
from bot.messagebus import Message
from bot.messages import Event
from bot.transport import TransportError
from connectors.errors import InvalidActionError
from storage.home_viewers import HomeViewers
from storage.ids import format_id
from storage.records import Approval, Decision, ProposedAction

log = structlog.get_logger(__name__)

# A Home not opened for this long is no longer kept current; opening it again draws it afresh.
HOME_KEPT_FOR = timedelta(days=30)


class HomeRefresher(HandlerBase):
    def __init__(self, collaborators: Collaborators) -> None:
        super().__init__(collaborators)
        # One refresh of a person's Home at a time in this process, so two publishes never cross on the way.
        self._locks: dict[str, asyncio.Lock] = {}

    async def opened(self, user: str, team: str) -> None:
        """``user`` opened their Home tab: remember them, and publish their Home."""
        async with self.units() as uow:
            await HomeViewers(uow.repo.session).opened(user, team, self.clock())
            await uow.commit()
        await self._refresh([user], always=True)

    async def refresh(self, user: str) -> None:
        """Draw one person's Home again (nothing happens for someone who never opened it)."""
        await self._refresh([user])

    async def refresh_all(self) -> None:
        """Draw again the Home of everyone who opened theirs lately; publish those that changed."""
        async with self.units() as uow:
            viewers = await HomeViewers(uow.repo.session).since(self.clock() - HOME_KEPT_FOR)
        if viewers:
            await self._refresh([viewer.user for viewer in viewers])

    async def changed(self, event: Event) -> Sequence[Message]:
        """A bus event after which some Homes may show something else."""
        await self.refresh_all()
        return []

    async def _refresh(self, users: Sequence[str], *, always: bool = False) -> None:
        shared = await read_shared(self.units, self.clock(), await self._group_members())
        cards: dict[int, ApprovalCard] = {}  # built once per refresh, whoever's Home shows them
        for user in users:
            lock = self._locks.setdefault(user, asyncio.Lock())
            async with lock:
                await self._refresh_one(user, shared, cards, always=always)

    async def _refresh_one(
        self, user: str, shared: SharedFacts, cards: dict[int, ApprovalCard], *, always: bool
    ) -> None:
        async with self.units() as uow:
            viewers = HomeViewers(uow.repo.session)
            viewer = await viewers.get(user)
            if viewer is None:
                return  # never opened their Home: there is nothing to keep current
            recent = await viewers.recent_requests(user, RECENT_SHOWN)
        published = viewer.last_published_hash
        theirs, for_others = approvals_for(user, shared, self.policy.roles)
        home = Home(
            user=user,
            waiting=[await self._approval_card(a, cards) for a in theirs[:WAITING_SHOWN]],
            waiting_total=len(theirs),
            for_others=[await self._approval_card(a, cards) for a in for_others[:FOR_OTHERS_SHOWN]],
            for_others_total=len(for_others),
            recent=recent,
            shared=shared,
            zone=self.zone,
        )
        view = home_view(home)
        drawn = view_hash(view)
        if drawn == published and not always:
            return
        async with self.units() as uow:
            # Of two refreshes that drew the same change (here or in another replica), one publishes it.
            claimed = await HomeViewers(uow.repo.session).claim_publish(user, published, drawn)
            await uow.commit()
        if not claimed:
            return
        try:
            await self.transport.publish_home(user, view)
        except TransportError as exc:
            log.warning("home_not_published", user=user, error=str(exc))
            async with self.units() as uow:  # give the change back, so that the next refresh publishes it
                await HomeViewers(uow.repo.session).claim_publish(user, drawn, published)
                await uow.commit()
            return
        log.info("home_published", user=user, waiting=len(theirs))

    async def _approval_card(self, approval: Approval, cards: dict[int, ApprovalCard]) -> ApprovalCard:
        assert approval.id is not None
        if approval.id not in cards:
            async with self.units() as uow:
                proposed = await uow.repo.get(ProposedAction, approval.action_id)
                decision = await uow.repo.get(Decision, approval.decision_id)
            assert proposed is not None and decision is not None
            try:
                cards[approval.id] = self._card(approval, proposed, decision)
            except InvalidActionError:
                # Its action is no longer offered as it was (an MCP server gone): shown by name, still decidable.
                cards[approval.id] = ApprovalCard(
                    approval_id=format_id("AP", approval.id),
                    action_id=format_id("A", proposed.id),
                    decision_id=format_id("D", decision.id),
                    summary=proposed.name,
                    params=proposed.params,
                    rationale=proposed.rationale,
                    rule_id=decision.rule_id or "default",
                    reason=decision.reason,
                    approver_roles=tuple(approval.approver_roles),
                    requester=approval.requester,
                    expires_at=approval.expires_at,
                    quorum=approval.quorum,
                    zone=self.zone,
                )
        return cards[approval.id]
