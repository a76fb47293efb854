"""The App Home: what waits for one person, read from the records and drawn as a Block Kit ``home`` view.

It shows the approvals they may decide now, each with what its card shows (summary, parameters, the edits made,
the agent's rationale) and the card's own buttons, so a click on the Home is decided exactly like one on the
card; an approval with more than the Home can show has no Approve button there, only a pointer to its card. Then
their requests that wait for someone else, their recent requests and how each went, this month's model spend by
agent with the budgets near their limit, and the paused agents. What every Home shows alike is read once per
refresh (``read_shared``); each person's part is picked from it. Text that people or models wrote is escaped,
and every text is cut to Slack's limits; the view stays under Slack's 100 blocks however much is waiting.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from slack_sdk.models.blocks import (
    Block,
    ContextBlock,
    DividerBlock,
    HeaderBlock,
    MarkdownTextObject,
    SectionBlock,
)
from slack_sdk.models.views import View

from agents.dates import describe
from bot import blocks
from bot.blocks import SECTION_TEXT_MAX
from bot.cost import period_start
from bot.digest import BudgetUse
from policies.approvers import is_in_roles
from runtime.approval_requests import request_view
from runtime.mrkdwn import escape, quote, truncate
from runtime.notices import ApprovalCard
from storage.home_viewers import HomeViewers, RequestState
from storage.ids import format_id
from storage.records import AgentPause, Approval, IntentStatus, RunStatus
from storage.repositories.budgets import CostRow
from storage.unit_of_work import UnitOfWorkFactory

WAITING_SHOWN = 10  # approvals with their buttons; past these, "and N more"
# An approval shows its card's long parameters (an email body) in a section each; with more than these, the Home
# cannot show all the card shows, and its Approve button is left to the card. 10 approvals of at most 6 blocks
# each, beside the 24 blocks of the rest, stay under Slack's 100.
LONG_PARAMS_SHOWN = 2
FOR_OTHERS_SHOWN = 10  # one line each, in one section
RECENT_SHOWN = 10
NEAR_LIMIT = 0.8  # a budget this much used is shown
REQUEST_TEXT_MAX = 300
LINE_MAX = 250  # a request waiting for others, a paused agent, a budget: one line each
LINE_SUMMARY_MAX = 120
NOTICE_MAX = 600
# Blocks left out of a Home's change detection: the notice of a click, and spend and budgets, which move with
# every model call (redrawn when the Home is opened or changes, and at most every few minutes otherwise).
_NOTICE_BLOCK = "home_notice"
_SPEND_BLOCKS = frozenset({"home_spend", "home_budgets"})

RUN_OUTCOMES: dict[str, str] = {
    RunStatus.PLANNING: "being planned",
    RunStatus.PAUSED: "waiting: its agent is paused",
    RunStatus.OVER_BUDGET: "stopped by a budget",
    RunStatus.ANSWERED: "answered",
    RunStatus.AWAITING_APPROVAL: "waiting for approval",
    RunStatus.EXECUTING: "running",
    RunStatus.COMPLETED: "done",
    RunStatus.DENIED: "denied by the policy",
    RunStatus.REJECTED: "rejected",
    RunStatus.FAILED: "failed",
    RunStatus.ESCALATED: "waiting for a person's answer",
    RunStatus.TAKEN_OVER: "taken over by a person",
    RunStatus.PERSON_ANSWERED: "answered by a person",
}
INTENT_OUTCOMES: dict[str, str] = {
    IntentStatus.RECEIVED: "received",
    IntentStatus.DISPATCHED: "handled",
    IntentStatus.FAILED: "failed",
}


@dataclass(frozen=True)
class Spend:
    """This month's model spend by agent and the budgets near their limit, as of ``read_at``."""

    read_at: datetime
    month_start: datetime
    by_agent: Sequence[CostRow]  # the costliest first
    budgets: Sequence[BudgetUse]


@dataclass(frozen=True)
class SharedFacts:
    """What every Home shows alike, read once per refresh."""

    now: datetime
    pending: Sequence[Approval]
    # The roles that may decide each approval now, worked out once for every viewer; expired ones left out.
    deciding: Mapping[int, Sequence[str]]
    voters: Mapping[int, Collection[str]]  # approvals that need several approvers: who approved so far
    teams: Mapping[int, str]  # the Slack team each approval's request came from ("" when not known)
    spend: Spend
    paused: Sequence[AgentPause]
    group_members: Mapping[str, Collection[str]]  # the policy's user groups (S…)


async def read_spend(units: UnitOfWorkFactory, now: datetime) -> Spend:
    """Spend as `/aios cost month` counts it (from the 1st, UTC), and the budgets of this day and month that
    are at least ``NEAR_LIMIT`` used."""
    month_start = period_start("month", now)
    async with units() as uow:
        spend = await uow.budgets.llm_costs("agent", month_start, now)
        accounts = await uow.budgets.budget_accounts([now.strftime("%Y-%m-%d"), now.strftime("%Y-%m")])
    budgets = [
        BudgetUse(a.budget_id, a.scope_value, a.period, a.spent_usd, a.limit_usd + a.granted_usd)
        for a in accounts
    ]
    return Spend(now, month_start, spend, [b for b in budgets if b.share >= NEAR_LIMIT])


async def read_shared(
    units: UnitOfWorkFactory, now: datetime, group_members: Mapping[str, Collection[str]], spend: Spend
) -> SharedFacts:
    """What every Home shows alike, in short units of work (on SQLite each holds the writer's turn): the
    approvals with their votes and teams, then the paused agents."""
    async with units() as uow:
        pending = await uow.approvals.pending_approvals()
        viewers = HomeViewers(uow.session)
        voters = await viewers.voters([a.id for a in pending if a.id is not None and a.quorum > 1])
        teams = await viewers.teams([a.id for a in pending if a.id is not None])
    async with units() as uow:
        paused = await uow.runs.paused_agents()
    return shared_facts(now, pending, voters, teams, spend, paused, group_members)


def shared_facts(
    now: datetime,
    pending: Sequence[Approval],
    voters: Mapping[int, Collection[str]],
    teams: Mapping[int, str],
    spend: Spend,
    paused: Sequence[AgentPause],
    group_members: Mapping[str, Collection[str]],
) -> SharedFacts:
    """The facts of a refresh, with who may decide each approval worked out once for every viewer."""
    deciding = {
        approval.id or 0: request_view(approval).deciding_roles(now)
        for approval in pending
        # past its expiry nobody may decide it any more; the timer sweep closes it
        if approval.expires_at is None or now < approval.expires_at
    }
    return SharedFacts(now, pending, deciding, voters, teams, spend, paused, group_members)


def approvals_for(
    user: str, shared: SharedFacts, roles: Mapping[str, Collection[str]], team: str = ""
) -> tuple[list[Approval], list[Approval]]:
    """The pending approvals ``user`` may approve now, and those they asked for or already approved that wait
    for someone else (a rule that forbids approving one's own request, a quorum still short). With ``team``,
    approvals requested in another Slack team are left out."""
    theirs: list[Approval] = []
    for_others: list[Approval] = []
    for approval in shared.pending:
        deciding = shared.deciding.get(approval.id or 0)
        if deciding is None:
            continue
        other_team = shared.teams.get(approval.id or 0, "")
        if team and other_team and other_team != team:
            continue
        asked = user == approval.requester
        barred = asked and (approval.forbid_self_approval or approval.quorum > 1)
        voted = user in shared.voters.get(approval.id or 0, ())
        if is_in_roles(user, deciding, roles, shared.group_members) and not (barred or voted):
            theirs.append(approval)
        elif asked or voted:
            for_others.append(approval)
    return theirs, for_others


@dataclass(frozen=True)
class Home:
    """One person's Home: their part of the approvals and their requests, beside what every Home shows."""

    waiting: Sequence[ApprovalCard]  # the first WAITING_SHOWN of those they may decide
    waiting_total: int
    for_others: Sequence[ApprovalCard]
    for_others_total: int
    recent: Sequence[RequestState]
    shared: SharedFacts
    zone: ZoneInfo
    channels: Mapping[str, str] = field(default_factory=dict)  # where each approval's card is, by AP-… id
    notice: str = ""  # mrkdwn, escaped: what became of the person's last click on the Home


def home_view(home: Home) -> dict[str, Any]:
    """The Home as a ``views.publish`` view (checked by slack_sdk as it is built)."""
    parts: list[Block | dict[str, Any]] = []
    if home.notice:
        parts.append(_section(_NOTICE_BLOCK, truncate(home.notice, NOTICE_MAX)))
    parts.append(HeaderBlock(block_id="home_waiting_header", text="Waiting for you"))
    for card in home.waiting:
        parts += _approval(card, home.zone, home.channels.get(card.approval_id, ""))
    if not home.waiting:
        parts.append(_section("home_waiting_none", "Nothing is waiting for your decision."))
    elif home.waiting_total > len(home.waiting):
        more = home.waiting_total - len(home.waiting)
        parts.append(_context("home_waiting_more", f"and {more} more — `/aios pending` lists every one"))
    if home.for_others:
        parts.append(_section("home_for_others", _for_others(home.for_others)))
        if home.for_others_total > len(home.for_others):
            more = home.for_others_total - len(home.for_others)
            parts.append(
                _context("home_for_others_more", f"and {more} more — `/aios pending` lists every one")
            )
    parts += [
        DividerBlock(block_id="home_divider_recent"),
        HeaderBlock(block_id="home_recent_header", text="Your recent requests"),
        *[_request(i, state, home.zone) for i, state in enumerate(home.recent)],
    ]
    if not home.recent:
        parts.append(_section("home_recent_none", "You have not asked for anything yet."))
    parts += [
        DividerBlock(block_id="home_divider_spend"),
        HeaderBlock(block_id="home_spend_header", text="Model spend and budgets"),
        _section("home_spend", _spend(home.shared.spend)),
        _section("home_budgets", _budgets(home.shared.spend.budgets)),
        DividerBlock(block_id="home_divider_paused"),
        HeaderBlock(block_id="home_paused_header", text="Paused agents"),
        _section("home_paused", _paused(home.shared.paused, home.zone)),
    ]
    return View(type="home", callback_id="aios_home", blocks=parts).to_dict()


def view_hash(view: dict[str, Any]) -> str:
    """What tells two renderings of a Home apart: 32 hex digits for what the records show, then 32 for spend and
    budgets (see ``spend_alone_differs``). The notice of a click is left out: drawn or not, the Home is the
    same, so a replica that has no notice to show does not publish it away."""
    rest = [b for b in view["blocks"] if b.get("block_id") not in _SPEND_BLOCKS | {_NOTICE_BLOCK}]
    spend = [b for b in view["blocks"] if b.get("block_id") in _SPEND_BLOCKS]
    return _digest(rest)[:32] + _digest(spend)[:32]


def spend_alone_differs(drawn: str, published: str | None) -> bool:
    """True if two Homes' hashes differ in spend and budgets only."""
    return published is not None and drawn != published and drawn[:32] == published[:32]


def _digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, ensure_ascii=False).encode()).hexdigest()


def _approval(card: ApprovalCard, zone: ZoneInfo, channel: str) -> list[dict[str, Any]]:
    """One approval as its card shows it: the summary (what, who asked, the short parameters) under a line with
    its id, approvers and expiry, the edits made, the long parameters and the agent's rationale, then the card's
    buttons. Block ids are unique within a view, so each is renamed after the approval. An approval whose card
    shows more than the Home can (many long parameters) keeps Reject and Edit; Approve is left to the card, so
    nobody approves from here what they could not read here."""
    _, rendered = blocks.approval_request(replace(card, zone=zone))
    by_id = {block.get("block_id"): block for block in rendered}
    deadline = f" · expires {describe(card.expires_at, zone)}" if card.expires_at else ""
    heading = f"`{card.approval_id}` · {escape(' or '.join(card.approver_roles))}{deadline}"
    summary = by_id["aios_summary"]["text"]["text"]
    long = [block for block in rendered if str(block.get("block_id", "")).startswith("aios_param_")]
    actions = next(block for block in rendered if block.get("type") == "actions")
    buttons = {
        **actions,
        "block_id": blocks.decision_block_id(len(card.edits), card.approval_id),
    }
    if len(long) > LONG_PARAMS_SHOWN or len(heading) + 1 + len(summary) > SECTION_TEXT_MAX:
        where = f"<#{channel}>" if channel else "its channel"
        pointer = f"_More than the Home can show: read its card in {where} to approve it._"
        buttons["elements"] = [e for e in actions["elements"] if e["action_id"] != blocks.APPROVE_ACTION_ID]
        return [
            _section(f"home_approval_{card.approval_id}", f"{heading}\n{pointer}\n{summary}").to_dict(),
            buttons,
        ]
    shown: list[dict[str, Any]] = [
        _section(f"home_approval_{card.approval_id}", f"{heading}\n{summary}").to_dict()
    ]
    if "aios_edits" in by_id:
        shown.append({**by_id["aios_edits"], "block_id": f"home_edits_{card.approval_id}"})
    shown += [{**block, "block_id": f"home_param_{card.approval_id}_{n}"} for n, block in enumerate(long)]
    shown.append({**by_id["aios_reasoning"], "block_id": f"home_reasoning_{card.approval_id}"})
    return [*shown, buttons]


def _for_others(cards: Sequence[ApprovalCard]) -> str:
    """One line each, short enough that all of them fit in the section."""
    lines = [
        truncate(
            f"• `{card.approval_id}` {quote(card.summary, LINE_SUMMARY_MAX)} — needs "
            f"{escape(' or '.join(card.approver_roles))}"
            + (f" ({card.quorum} different people)" if card.quorum > 1 else ""),
            LINE_MAX,
        )
        for card in cards
    ]
    return "*Your requests and approvals waiting for someone else*\n" + "\n".join(lines)


def _request(index: int, state: RequestState, zone: ZoneInfo) -> SectionBlock:
    intent, run = state.intent, state.run
    if run is not None:
        outcome = RUN_OUTCOMES.get(run.status, run.status.replace("_", " "))
        ids = f"`{format_id('I', intent.id)}` · `{format_id('R', run.id)}` {escape(run.agent)}"
    else:
        outcome = INTENT_OUTCOMES.get(intent.status, intent.status.replace("_", " "))
        ids = f"`{format_id('I', intent.id)}`"
    words = " ".join(intent.text.split())  # one line: a quote of several would take the section
    when = describe(intent.created_at, zone)
    text = f"*{escape(outcome.capitalize())}* · {ids} · {when}\n>{quote(words, REQUEST_TEXT_MAX)}"
    return _section(f"home_request_{index}", text)


def _spend(spend: Spend) -> str:
    since = f"{spend.month_start:%B %Y}, since the 1st (UTC)"
    if not spend.by_agent:
        return f"*Model spend this month:* no model calls in {since}."
    total = sum(row.cost_usd for row in spend.by_agent)
    lines = [f"• {escape(row.key)}: ${row.cost_usd:,.2f}" for row in spend.by_agent]
    return f"*Model spend this month:* ${total:,.2f} in {since}\n" + "\n".join(lines)


def _budgets(budgets: Sequence[BudgetUse]) -> str:
    if not budgets:
        return f"*Budgets near their limit:* none is {NEAR_LIMIT:.0%} used."
    lines = [
        truncate(
            f"• `{escape(b.budget_id)}` ({escape(b.scope_value)}, {b.period}): "
            f"${b.spent_usd:,.2f} of ${b.ceiling_usd:,.2f} ({b.share:.0%})",
            LINE_MAX,
        )
        for b in budgets
    ]
    return "*Budgets near their limit*\n" + "\n".join(lines)


def _paused(paused: Sequence[AgentPause], zone: ZoneInfo) -> str:
    if not paused:
        return "No agent is paused."
    return "\n".join(
        truncate(
            f"• *{escape(p.agent)}*, paused by <@{p.paused_by}> on {describe(p.created_at, zone)} — "
            f"`/aios resume {escape(p.agent)}`",
            LINE_MAX,
        )
        for p in paused
    )


def _section(block_id: str, mrkdwn: str) -> SectionBlock:
    return SectionBlock(block_id=block_id, text=MarkdownTextObject(text=truncate(mrkdwn, SECTION_TEXT_MAX)))


def _context(block_id: str, mrkdwn: str) -> ContextBlock:
    return ContextBlock(
        block_id=block_id, elements=[MarkdownTextObject(text=truncate(mrkdwn, SECTION_TEXT_MAX))]
    )
