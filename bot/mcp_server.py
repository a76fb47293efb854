"""`aios mcp`: AIOS as a Model Context Protocol server, over stdio or (``--http``) streamable HTTP.

The tools are thin: the read-only ones answer what `/aios why`, `/aios pending`, `/aios cost` and `aios memory
search` answer, and `propose_action` files a proposal through the bus as an agent's proposal is filed, so the
policy judges it and people approve it in the thread. An MCP client can read and propose; nothing it sends can
approve an action, and what runs is what the policy allows.
"""

from __future__ import annotations

import json
import re
import sys
from datetime import datetime
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp.types import ToolAnnotations
from pydantic import BaseModel, Field
from rich.console import Console

from agents.base import Agent
from bot.bootstrap import Aios, bootstrap
from bot.console import ConsoleTransport
from bot.cost import cost_report, cost_text
from bot.explain import NotFoundError, explain
from bot.settings import Settings
from bot.terminal import CONSOLE_CHANNEL, CONSOLE_TEAM
from connectors.errors import InvalidActionError, UnknownActionError
from runtime.intake import IncomingIntent
from runtime.messages import ProposeAction
from runtime.transport import Transport, TransportError
from storage.ids import UnknownIdError, format_id
from storage.records import ProposedAction
from storage.repositories.budgets import CostRow

READ_ONLY = ToolAnnotations(read_only_hint=True, open_world_hint=False)
# Proposing adds records and posts a card; an allowed action then runs (a refund, a draft): additive, and
# never the same twice, since each call is a new request.
PROPOSING = ToolAnnotations(
    read_only_hint=False, destructive_hint=False, idempotent_hint=False, open_world_hint=True
)
SLACK_USER = re.compile(r"^[UW][A-Z0-9]{2,}$")
SLACK_CHANNEL = re.compile(r"^[CDG][A-Z0-9]{2,}$")
INSTRUCTIONS = (
    "AIOS is a chat-ops bot: agents propose typed actions, a policy allows, denies or asks a person to "
    "approve, and approved actions run exactly once. Use why, pending_approvals, cost and memory_search to "
    "read; propose_action files a proposal for the policy and the team's approvers, it never approves."
)


class PendingApproval(BaseModel):
    id: str = Field(description="The approval id (AP-…)")
    action: str
    params: dict[str, Any]
    requester: str
    channel: str
    needs: list[str] = Field(description="Roles of whoever may decide it")
    asked_at: datetime
    age_minutes: int


class PendingApprovals(BaseModel):
    approvals: list[PendingApproval]


class CostLine(BaseModel):
    key: str
    calls: int
    input_tokens: int
    output_tokens: int
    cache_write_tokens: int
    cache_read_tokens: int
    cost_usd: float
    failures: int


class CostSummary(BaseModel):
    period: str
    since: datetime
    total_usd: float
    calls: int
    failures: int
    by_agent: list[CostLine]
    by_run: list[CostLine] = Field(description="The costliest runs")
    by_requester: list[CostLine]
    text: str = Field(description="The report as /aios cost shows it (Slack mrkdwn)")


class MemoryHit(BaseModel):
    id: str = Field(description="The memory id (M-…)")
    text: str
    kind: str
    key: str | None
    score: float
    created_at: datetime


class MemorySearch(BaseModel):
    team: str
    hits: list[MemoryHit]


class Proposal(BaseModel):
    action_id: str = Field(description="A-…")
    action: str
    summary: str
    decision_id: str = Field(description="The policy's decision (D-…); `why` explains it")
    verdict: str = Field(description="allow, deny or require_approval")
    rule: str | None
    reason: str
    approval_id: str | None = Field(description="AP-… when a person must approve")
    approvers: list[str] = Field(description="Roles that may approve it")
    status: str = Field(description="The action's state now: awaiting_approval, executed, denied, failed, …")
    execution_id: str | None = Field(description="E-… once it ran")


class ProposalResult(BaseModel):
    intent_id: str
    run_id: str
    channel: str
    proposals: list[Proposal]


def build_server(aios: Aios, *, slack: bool) -> MCPServer:
    """The tools over an already bootstrapped bot; ``slack`` says whether cards go to Slack."""
    server: MCPServer = MCPServer("aios", instructions=INSTRUCTIONS, log_level="WARNING")
    agents = _agents_by_action(aios)

    @server.tool(annotations=READ_ONLY)
    async def why(
        id: Annotated[str, Field(description="A record id from a thread: R-…, A-…, D-…, AP-…, E-… or I-…")],
    ) -> str:
        """Explain a record: the whole chain from the intent to the execution, as `/aios why ID` does."""
        try:
            return (await explain(aios.units, id)).replace("*", "")
        except (UnknownIdError, NotFoundError) as exc:
            raise ToolError(str(exc)) from None

    @server.tool(annotations=READ_ONLY)
    async def pending_approvals() -> PendingApprovals:
        """The approval requests waiting for a person, oldest first, as `/aios pending` lists them."""
        now = aios.clock()
        async with aios.units() as uow:
            listed = []
            for approval in await uow.approvals.pending_approvals():
                action = await uow.get(ProposedAction, approval.action_id)
                assert action is not None
                listed.append(
                    PendingApproval(
                        id=format_id("AP", approval.id),
                        action=action.name,
                        params=action.params,
                        requester=approval.requester,
                        channel=approval.channel,
                        needs=approval.approver_roles,
                        asked_at=approval.created_at,
                        age_minutes=int((now - approval.created_at).total_seconds() // 60),
                    )
                )
        return PendingApprovals(approvals=listed)

    @server.tool(annotations=READ_ONLY)
    async def cost(
        period: Annotated[
            Literal["today", "week", "month"], Field(description="A calendar period in UTC")
        ] = "today",
    ) -> CostSummary:
        """Model spend by agent, costliest runs and requester for a period, as `/aios cost` reports it."""
        report = await cost_report(aios.units, period, aios.clock())
        total = report.total
        return CostSummary(
            period=report.period,
            since=report.since,
            total_usd=round(total.cost_usd, 6),
            calls=total.calls,
            failures=total.failures,
            by_agent=_cost_lines(report.groups["agent"]),
            by_run=_cost_lines(report.groups["run"]),
            by_requester=_cost_lines(report.groups["requester"]),
            text=cost_text(report),
        )

    @server.tool(annotations=READ_ONLY)
    async def memory_search(
        query: Annotated[str, Field(min_length=1, description="Words to look for")],
        team: Annotated[str, Field(description="The Slack team id (tenant)")] = CONSOLE_TEAM,
        limit: Annotated[int, Field(ge=1, le=100)] = 5,
    ) -> MemorySearch:
        """Search a team's long-term memories (exact keys, keywords, and similarity when configured)."""
        hits = await aios.memory.search(team, query, limit=limit)
        return MemorySearch(
            team=team,
            hits=[
                MemoryHit(
                    id=f"M-{hit.id}",
                    text=hit.text,
                    kind=hit.kind,
                    key=hit.key,
                    score=round(hit.score, 4),
                    created_at=hit.created_at,
                )
                for hit in hits
            ],
        )

    @server.tool(annotations=PROPOSING, description=_propose_description(aios, agents))
    async def propose_action(
        action: Annotated[str, Field(description="The action's name, e.g. shop.refund")],
        params: Annotated[
            dict[str, Any], Field(description="The action's parameters (see its schema above)")
        ],
        rationale: Annotated[str, Field(min_length=1, max_length=4000, description="Why, for the approvers")],
        requester: Annotated[
            str, Field(description="The Slack user id (U…) of the person this is proposed for")
        ],
        channel: Annotated[
            str | None,
            Field(description="The Slack channel id (C…) for the approval card; required with Slack"),
        ] = None,
        team: Annotated[str, Field(description="The Slack team id (tenant)")] = CONSOLE_TEAM,
    ) -> ProposalResult:
        if not SLACK_USER.match(requester):
            raise ToolError(f"requester {requester!r} is not a Slack user id; user ids look like U0123ABCD")
        if channel is None:
            if slack:
                raise ToolError("channel is required: the Slack channel id (C…) where the approval card goes")
            channel = CONSOLE_CHANNEL
        elif not SLACK_CHANNEL.match(channel):
            raise ToolError(f"channel {channel!r} is not a Slack channel id; channel ids look like C0123ABCD")
        agent = agents.get(action)
        if agent is None:
            raise ToolError(f"AIOS does not propose {action!r}; use one of {', '.join(sorted(agents))}")
        try:
            proposed = aios.registry.validate(action, params)
            if refused := await agent.refusal(proposed):
                raise InvalidActionError(refused)
        except (InvalidActionError, UnknownActionError) as exc:
            raise ToolError(f"nothing was proposed: {exc}") from None
        incoming = IncomingIntent(
            source="mcp",
            team_id=team,
            channel=channel,
            thread_ts=None,
            user=requester,
            text=f"proposed via MCP: {proposed.summary()}",
        )
        intent_id = await aios.accept(incoming)
        assert intent_id is not None  # no delivery key: never a duplicate
        try:
            await aios.bus.handle(ProposeAction(intent_id, agent.name, action, params, rationale))
        except TransportError as exc:
            raise ToolError(f"nothing was proposed: the thread could not be started ({exc})") from None
        return await _outcome(aios, intent_id, channel)

    return server


def _agents_by_action(aios: Aios) -> dict[str, Agent]:
    """What an MCP client may propose: the actions the agents propose, each filed as a run of its agent."""
    return {
        name: agent
        for agent in aios.handlers.dispatcher.agents.values()
        for name in agent.action_names
        if name in aios.registry.action_names
    }


def _propose_description(aios: Aios, agents: dict[str, Agent]) -> str:
    lines = [
        "Propose one action for a person (requester). Nothing is approved here: the policy allows, denies or "
        "asks the team's approvers in Slack (the card shows the rationale), and an allowed action runs at once. "
        "Returns the decision (D-…), the verdict and, when a person must approve, the approval (AP-…). "
        "Actions and their params (JSON Schema):"
    ]
    for name in sorted(agents):
        model = aios.registry.model_for(name)
        schema = model.model_json_schema()
        params = {"properties": schema.get("properties", {}), "required": schema.get("required", [])}
        lines.append(f"- {name}: {model.description} {json.dumps(params, separators=(',', ':'))}")
    return "\n".join(lines)


def _cost_lines(rows: list[CostRow]) -> list[CostLine]:
    return [
        CostLine(
            key=row.key,
            calls=row.calls,
            input_tokens=row.input_tokens,
            output_tokens=row.output_tokens,
            cache_write_tokens=row.cache_write_tokens,
            cache_read_tokens=row.cache_read_tokens,
            cost_usd=round(row.cost_usd, 6),
            failures=row.failures,
        )
        for row in rows
    ]


async def _outcome(aios: Aios, intent_id: int, channel: str) -> ProposalResult:
    """What the policy made of the proposal, and what happened since (an allowed action has run by now)."""
    async with aios.units() as uow:
        runs = await uow.runs.runs_for_intent(intent_id)
        if not runs or runs[0].id is None:
            raise ToolError(f"{format_id('I', intent_id)} was not filed; `why` shows what happened to it")
        proposals = []
        for action in await uow.runs.actions_for_run(runs[0].id):
            assert action.id is not None
            decision = (await uow.runs.decisions_for_action(action.id))[0]
            approval = await uow.approvals.approval_for_action(action.id)
            executions = await uow.executions.executions_for_action(action.id)
            proposals.append(
                Proposal(
                    action_id=format_id("A", action.id),
                    action=action.name,
                    summary=aios.registry.validate(action.name, action.params).summary(),
                    decision_id=format_id("D", decision.id),
                    verdict=decision.verdict,
                    rule=decision.rule_id,
                    reason=decision.reason,
                    approval_id=format_id("AP", approval.id) if approval else None,
                    approvers=approval.approver_roles if approval else [],
                    status=action.status,
                    execution_id=format_id("E", executions[-1].id) if executions else None,
                )
            )
    return ProposalResult(
        intent_id=format_id("I", intent_id),
        run_id=format_id("R", runs[0].id),
        channel=channel,
        proposals=proposals,
    )


async def serve_mcp(settings: Settings, *, http: bool, host: str, port: int) -> None:
    """Build the whole bot (Slack when SLACK_BOT_TOKEN is set, else the console on stderr) and serve MCP.

    On stdio, stdout is the protocol: everything else (logs, the console's cards) goes to stderr."""
    transport: Transport
    if settings.slack_bot_token:
        from bot.slack_transport import SlackTransport, build_slack_client

        transport = SlackTransport(build_slack_client(settings.slack_bot_token, settings.slack_api_url))
    else:
        transport = ConsoleTransport(Console(stderr=True, soft_wrap=True))
    aios = await bootstrap(settings, transport)
    try:
        server = build_server(aios, slack=settings.slack_bot_token is not None)
        if http:
            print(f"serving MCP on http://{host}:{port}/mcp", file=sys.stderr, flush=True)
            await server.run_streamable_http_async(host=host, port=port)
        else:
            await server.run_stdio_async()
    finally:
        await aios.close()
