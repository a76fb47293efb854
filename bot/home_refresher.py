"""Keeping each App Home current: drawn again from the records when what it shows may have changed, and published
only when it differs from the Home published last.

The bus's events (an action allowed, approved, executed, failed; an agent resumed) only mark the Homes stale: one
background task redraws them, however many events came meanwhile, so no event waits for Slack to take every
Home. A timer every few seconds does the same for what has no event (a new approval request, an expiry, a pause).
Spend and budgets move with every model call, so they alone publish a Home at most every few minutes; opening
the Home shows them as they are. A click on the Home is answered on the clicker's Home, at its top.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import structlog

from bot.app_home import (
    FOR_OTHERS_SHOWN,
    RECENT_SHOWN,
    WAITING_SHOWN,
    Home,
    Spend,
    approvals_for,
    home_view,
    read_shared,
    read_spend,
    spend_alone_differs,
    view_hash,
)
from connectors.errors import InvalidActionError
from connectors.registry import ConnectorRegistry
from policies.engine import Policy
from runtime.handlers.base import approval_card, card_edit, group_members
from runtime.messagebus import Message, MessageBus
from runtime.messages import (
    ActionAllowed,
    ActionApproved,
    ActionExecuted,
    ActionFailed,
    AgentResumed,
    DecideApproval,
    Event,
)
from runtime.mrkdwn import escape
from runtime.notices import ApprovalCard
from runtime.transport import Transport, TransportError
from storage.home_viewers import CardRecords, HomeViewers
from storage.ids import format_id
from storage.records import Approval, ApprovalStatus, HomeViewer
from storage.unit_of_work import UnitOfWorkFactory

log = structlog.get_logger(__name__)

# A Home not opened for this long is no longer kept current; opening it again draws it afresh.
HOME_KEPT_FOR = timedelta(days=30)
SPEND_READ_EVERY = timedelta(minutes=1)  # a refresh between two reads draws spend as last read
SPEND_REDRAWN_EVERY = timedelta(minutes=5)  # the most often spend alone publishes a person's Home
NOTICE_SHOWN_FOR = timedelta(minutes=10)  # how long a click's outcome stays at the top of the clicker's Home
# Slack's answers for a person who is no longer there: their Home is forgotten until they open it again.
GONE_ERRORS = ("user_not_found", "account_inactive")
RETRY_FIRST = timedelta(seconds=30)  # after another refused publish, doubling up to RETRY_MAX
RETRY_MAX = timedelta(hours=1)


class HomeRefresher:
    def __init__(
        self,
        *,
        units: UnitOfWorkFactory,
        policy: Policy,
        registry: ConnectorRegistry,
        transport: Transport,
        clock: Callable[[], datetime],
        zone: ZoneInfo,
    ) -> None:
        self.units = units
        self.policy = policy
        self.registry = registry  # how an approval's action is validated and summed up on its card
        self.transport = transport
        self.clock = clock
        self.zone = zone  # the team's time zone: how times are told
        # One refresh of a person's Home at a time in this process, so two publishes never cross on the way.
        self._locks: dict[str, asyncio.Lock] = {}
        self._stale = False
        self._redrawing: asyncio.Task[None] | None = None
        self._spend: Spend | None = None
        self._spend_shown_at: dict[str, datetime] = {}  # by this process, by person
        self._notices: dict[str, tuple[str, datetime]] = {}
        self._retry: dict[str, tuple[int, datetime]] = {}  # refused publishes in a row, and when to try again
        # By person: the hash this process's last publish replaced, and the one it stored instead.
        self._stored: dict[str, tuple[str | None, str]] = {}

    def subscribe(self, bus: MessageBus) -> None:
        """Subscribed after the handlers, so that each event's own work is under way before the Homes are marked
        for a redraw."""
        for changed in (ActionAllowed, ActionApproved, ActionExecuted, ActionFailed, AgentResumed):
            bus.on_event(changed, self.changed)

    async def opened(self, user: str, team: str) -> None:
        """``user`` opened their Home tab: remember them, and publish their Home with spend as it is now."""
        async with self.units() as uow:
            await HomeViewers(uow.session).opened(user, team, self.clock())
            await uow.commit()
            viewer = await HomeViewers(uow.session).get(user)
        self._retry.pop(user, None)
        self._spend = await read_spend(self.units, self.clock())
        if viewer is not None:
            await self._refresh([viewer], always=True)

    async def refresh(self, user: str) -> None:
        """Draw one person's Home again (nothing happens for someone who never opened it)."""
        async with self.units.read() as uow:
            viewer = await HomeViewers(uow.session).get(user)
        if viewer is not None:
            await self._refresh([viewer])

    async def refresh_all(self) -> None:
        """Draw again the Home of everyone who opened theirs lately; publish those that changed."""
        async with self.units.read() as uow:
            viewers = await HomeViewers(uow.session).since(self.clock() - HOME_KEPT_FOR)
        if viewers:
            await self._refresh(viewers)

    async def changed(self, event: Event) -> Sequence[Message]:
        """A bus event after which some Homes may show something else: they are redrawn in the background."""
        self._redraw_soon()
        return []

    async def redraw(self) -> None:
        """The timer's: redraw every Home, together with a redraw events asked for if one is under way."""
        await asyncio.shield(self._redraw_soon())

    async def settle(self) -> None:
        """Wait until no redraw is under way or asked for (at shutdown, and for tests)."""
        while self._redrawing is not None and not self._redrawing.done():
            await asyncio.shield(self._redrawing)

    async def clicked(self, command: DecideApproval, before: int) -> None:
        """Tell someone who clicked a decision on their Home what came of it, at the top of their Home: the
        approval's channel, where the refusal or the count is said too, may be one they are not in. ``before``:
        the newest decision id before the click was decided."""
        ref = format_id("AP", command.approval_id)
        async with self.units.read() as uow:
            approval = await uow.get(Approval, command.approval_id)
            mine = (
                await HomeViewers(uow.session).decisions_since(approval.action_id, command.user, before)
                if approval is not None
                else []
            )
            voters = await uow.approvals.voters(command.approval_id) if approval is not None else []
            viewer = await HomeViewers(uow.session).get(command.user)
        if approval is None or not mine:
            told = f"Your click on `{ref}` changed nothing: it is not waiting for a decision."
        elif mine[-1].kind == "refusal":
            told = f"Your click on `{ref}` did not count. {escape(mine[-1].reason)}"
        elif mine[-1].verdict == "vote":
            told = f"Your click on `{ref}` counted: it has {len(voters)} of the {approval.quorum} approvals it needs."
        elif approval.status == ApprovalStatus.APPROVED:
            told = f"Your click on `{ref}`: approved."
        else:
            told = f"Your click on `{ref}`: rejected; nothing of it was done."
        self._notices[command.user] = (f":information_source: {told}", self.clock())
        if viewer is not None:
            await self._refresh([viewer], always=True)

    def _redraw_soon(self) -> asyncio.Task[None]:
        self._stale = True
        if self._redrawing is None or self._redrawing.done():
            self._redrawing = asyncio.get_running_loop().create_task(self._redraw_while_stale())
        return self._redrawing

    async def _redraw_while_stale(self) -> None:
        while self._stale:
            self._stale = False
            try:
                await self.refresh_all()
            except Exception:
                log.exception("homes_not_redrawn")

    async def _refresh(self, viewers: Sequence[HomeViewer], *, always: bool = False) -> None:
        """Whoever it is for, a refresh reads in a few short units of work, one query for all the viewers each;
        only a Home that changed costs more."""
        now = self.clock()
        if self._spend is None or now - self._spend.read_at >= SPEND_READ_EVERY:
            self._spend = await read_spend(self.units, now)
        shared = await read_shared(
            self.units, now, await group_members(self.policy, self.transport), self._spend
        )
        sorted_out = {
            viewer.user: approvals_for(viewer.user, shared, self.policy.roles, viewer.team)
            for viewer in viewers
        }
        shown = {
            approval.id or 0: approval
            for theirs, for_others in sorted_out.values()
            for approval in (*theirs[:WAITING_SHOWN], *for_others[:FOR_OTHERS_SHOWN])
        }
        async with self.units.read() as uow:
            recent = await HomeViewers(uow.session).recent_requests(
                [viewer.user for viewer in viewers], RECENT_SHOWN
            )
        async with self.units.read() as uow:
            records = await HomeViewers(uow.session).card_records(list(shown.values()))
        cards = {key: self._home_card(approval, records[key]) for key, approval in shown.items()}
        channels = {cards[key].approval_id: approval.channel for key, approval in shown.items()}
        for viewer in viewers:
            user = viewer.user
            retry = self._retry.get(user)
            if retry is not None and now < retry[1] and not always:
                continue  # Slack refused their last publish: wait before asking again
            theirs, for_others = sorted_out[user]
            notice, noticed_at = self._notices.get(user, ("", now))
            home = Home(
                waiting=[cards[a.id or 0] for a in theirs[:WAITING_SHOWN]],
                waiting_total=len(theirs),
                for_others=[cards[a.id or 0] for a in for_others[:FOR_OTHERS_SHOWN]],
                for_others_total=len(for_others),
                recent=recent.get(user, []),
                shared=shared,
                zone=self.zone,
                channels=channels,
                notice=notice if now - noticed_at < NOTICE_SHOWN_FOR else "",
            )
            async with self._locks.setdefault(user, asyncio.Lock()):
                await self._publish(user, home_view(home), viewer.last_published_hash, always=always)

    async def _publish(self, user: str, view: dict[str, Any], published: str | None, *, always: bool) -> None:
        drawn, now = view_hash(view), self.clock()
        replaced = self._stored.get(user)
        if replaced is not None and published == replaced[0]:
            # Read before a refresh of this process that overlapped this one stored its publish (they publish
            # one after the other, under the person's lock): that publish is what Slack shows now.
            published = replaced[1]
        if not always:
            if drawn == published:
                return
            shown_at = self._spend_shown_at.get(user)
            if spend_alone_differs(drawn, published) and shown_at and now - shown_at < SPEND_REDRAWN_EVERY:
                return  # spend as of the last publish is shown until a few minutes have passed
        try:
            await self.transport.publish_home(user, view)
        except TransportError as exc:
            await self._refused(user, exc, now)
            return
        self._retry.pop(user, None)
        self._spend_shown_at[user] = now
        async with self.units() as uow:
            viewers = HomeViewers(uow.session)
            # Stored after the publish, from the hash read before drawing: if another refresh (another replica)
            # published meanwhile, which of the two Slack shows is unknown, and the next refresh publishes again.
            stored = await viewers.published(user, published, drawn)
            if not stored:
                await viewers.forget_published(user)
            await uow.commit()
        if stored:
            self._stored[user] = (published, drawn)
        else:
            self._stored.pop(user, None)
        log.info("home_published", user=user)

    async def _refused(self, user: str, exc: TransportError, now: datetime) -> None:
        """A person Slack no longer knows is dropped; any other refusal is retried later, and later again."""
        if any(error in str(exc) for error in GONE_ERRORS):
            log.info("home_viewer_gone", user=user, error=str(exc))
            async with self.units() as uow:
                await HomeViewers(uow.session).drop(user)
                await uow.commit()
            self._retry.pop(user, None)
            self._stored.pop(user, None)
            return
        failures = self._retry.get(user, (0, now))[0] + 1
        wait = min(RETRY_FIRST * 2 ** (failures - 1), RETRY_MAX)
        self._retry[user] = (failures, now + wait)
        log.warning("home_not_published", user=user, error=str(exc), retry_in=wait.total_seconds())

    def _home_card(self, approval: Approval, records: CardRecords) -> ApprovalCard:
        proposed, decision = records.proposed, records.decision
        try:
            return approval_card(
                approval,
                proposed,
                decision,
                records.edits,
                registry=self.registry,
                policy=self.policy,
                zone=self.zone,
            )
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
                edits=tuple(card_edit(edit) for edit in records.edits),
            )
