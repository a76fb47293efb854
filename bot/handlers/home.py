"""Keeping each App Home current: drawn again from the records when what it shows may have changed (the events of
the bus, a decision clicked on the Home, and a timer every few seconds for what has no event: a new approval
request, an expiry, a pause, a budget), and published only when it differs from the Home published last."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from typing import Any

import structlog

from bot.app_home import (
    FOR_OTHERS_SHOWN,
    RECENT_SHOWN,
    WAITING_SHOWN,
    Home,
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
from storage.home_viewers import HomeViewers, RequestState
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
        """Everything a refresh reads is read in two units of work whoever it is for (on SQLite each unit of work
        waits its turn with those of clicks and intents); only a Home that changed costs more."""
        shared = await read_shared(self.units, self.clock(), await self._group_members())
        sorted_out = {user: approvals_for(user, shared, self.policy.roles) for user in users}
        shown = {
            approval.id or 0: approval
            for theirs, for_others in sorted_out.values()
            for approval in (*theirs[:WAITING_SHOWN], *for_others[:FOR_OTHERS_SHOWN])
        }
        known: dict[str, tuple[str | None, list[RequestState]]] = {}
        async with self.units() as uow:
            viewers = HomeViewers(uow.repo.session)
            for user in users:
                viewer = await viewers.get(user)
                if viewer is not None:  # someone who never opened their Home has nothing to keep current
                    known[user] = (
                        viewer.last_published_hash,
                        await viewers.recent_requests(user, RECENT_SHOWN),
                    )
            records = await viewers.card_records(list(shown.values()))
        cards = {key: self._home_card(approval, *records[key]) for key, approval in shown.items()}
        for user, (published, recent) in known.items():
            theirs, for_others = sorted_out[user]
            home = Home(
                waiting=[cards[a.id or 0] for a in theirs[:WAITING_SHOWN]],
                waiting_total=len(theirs),
                for_others=[cards[a.id or 0] for a in for_others[:FOR_OTHERS_SHOWN]],
                for_others_total=len(for_others),
                recent=recent,
                shared=shared,
                zone=self.zone,
            )
            async with self._locks.setdefault(user, asyncio.Lock()):
                await self._publish(user, home_view(home), published, always=always)

    async def _publish(self, user: str, view: dict[str, Any], published: str | None, *, always: bool) -> None:
        drawn = view_hash(view)
        if drawn == published and not always:
            return
        async with self.units() as uow:
            # Of two refreshes that drew the same change (here or in another replica), one publishes it.
            claimed = await HomeViewers(uow.repo.session).claim_publish(user, published, drawn)
            await uow.commit()
        if not claimed:
            return  # another refresh published since this one read: the next one draws from the newer records
        try:
            await self.transport.publish_home(user, view)
        except TransportError as exc:
            log.warning("home_not_published", user=user, error=str(exc))
            async with self.units() as uow:  # give the change back, so that the next refresh publishes it
                await HomeViewers(uow.repo.session).claim_publish(user, drawn, published)
                await uow.commit()
            return
        log.info("home_published", user=user)

    def _home_card(self, approval: Approval, proposed: ProposedAction, decision: Decision) -> ApprovalCard:
        try:
            return self._card(approval, proposed, decision)
        except InvalidActionError:
            # Its action is no longer offered as it was (an MCP server gone): shown by name, still decidable.
            return ApprovalCard(
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
