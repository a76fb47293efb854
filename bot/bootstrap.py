"""The composition root: the only place that picks concrete classes and wires them together."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from contextlib import AsyncExitStack
from dataclasses import dataclass
from datetime import datetime
from functools import partial

import structlog
from sqlalchemy.ext.asyncio import AsyncEngine

from agents.base import Agent
from agents.budgets import BudgetGuard
from agents.content import ContentAgent
from agents.dispatcher import Dispatcher
from agents.llm import LLM, CallContext
from agents.metering import BudgetWarning, MeteredLLM
from agents.offline import OfflinePlanner
from agents.pricing import PriceTable
from agents.publishing_calendar import PublishingCalendar
from agents.returns import OrderLookup, ReturnsAgent
from agents.scheduling import SchedulingAgent
from agents.tools_agent import ToolsAgent
from bot.digest import digest_period, post_digest
from bot.home_refresher import HomeRefresher
from bot.logs import hide_secrets
from bot.memory_setup import open_memory_store
from bot.queries import quick_answers
from bot.redacting_transport import RedactingTransport
from bot.settings import Settings
from bot.shared_answers import SharedAnswers
from connectors.actions import CmsCreateDraft
from connectors.base import ConnectorContext
from connectors.mcp_tools import params_by_action
from connectors.redaction import RedactedOrders, Redactor
from connectors.registry import ConnectorRegistry, installed_action_params
from policies.engine import Policy
from runtime import observability
from runtime.background import BackgroundTasks
from runtime.handlers import Handlers
from runtime.intake import IncomingIntent, IntentInbox
from runtime.messagebus import Message, MessageBus
from runtime.messages import HandleIntent, Recover, log_fields
from runtime.tracing import IntentTraces, configure_from_environment
from runtime.transport import Transport, TransportError
from storage.brand_voice import BrandVoice
from storage.engine import create_engine
from storage.leases import Lease, acquire_lease
from storage.memory import MemoryStore, Retention
from storage.migrate import upgrade_to_head
from storage.planned_slots import holding_actions
from storage.records import utcnow
from storage.unit_of_work import UnitOfWorkFactory

log = structlog.get_logger(__name__)

# The exit status of a process that stopped with work that would not end (logged as lease_kept_at_shutdown).
EXIT_WORK_NOT_ENDED = 3


@dataclass
class Aios:
    """Everything a front door (Slack, console, CLI) needs, already wired."""

    settings: Settings
    engine: AsyncEngine
    units: UnitOfWorkFactory
    policy: Policy
    registry: ConnectorRegistry
    bus: MessageBus
    handlers: Handlers
    home: HomeRefresher  # keeps each App Home current, on the bus's events and the scheduler's timer
    background: BackgroundTasks
    clock: Callable[[], datetime]
    llm: LLM
    memory: MemoryStore
    lease: Lease
    inbox: IntentInbox
    # What acks carry, by subcommand and argument (bot/queries.py); closed before the engine is disposed.
    quick_answers: SharedAnswers[tuple[str, str]]
    # False for `aios serve --no-work`: intents are stored without an owner and planned by `aios worker`.
    works: bool = True
    # True in `aios worker`: its claim loop plans intents, so recovery leaves them to it (see Recover).
    claim_loop: bool = False

    async def accept(self, incoming: IncomingIntent) -> int | None:
        return await self.inbox.accept(incoming)

    async def process(self, message: Message) -> None:
        """Run a message to completion; a failure is logged (an intent's is told in its thread by its handler)."""
        try:
            await self.bus.handle(message)
        except Exception:
            log.exception("message_failed", **log_fields(message))

    def submit(self, message: Message) -> None:
        """Hand a message to the background, after the ack; an intent is left to a worker when this process
        does no work."""
        if isinstance(message, HandleIntent) and not self.works:
            return
        self.background.spawn(self.process(message), name=type(message).__name__)

    async def post_digest(self) -> None:
        """The scheduled job: the digest of the day up to now, once per period across replicas."""
        channel = self.settings.digest_channel
        assert channel is not None
        try:
            period = digest_period(self.settings.digest_cron, self.clock())
            await post_digest(
                self.units, self.handlers.transport, channel, period, self.policy.document.budgets
            )
        except TransportError as exc:
            log.error("digest_not_posted", channel=channel, error=str(exc))

    async def recover(self) -> None:
        """Carry on, in the background, whatever a stopped process left between two checkpoints."""
        self.submit(Recover(grace_seconds=self.settings.recovery_grace_seconds, claim_loop=self.claim_loop))

    async def take_over_from_the_dead(self) -> None:
        """Every few seconds: hold on to this process's lease, and carry on the work of processes that died."""
        await self.lease.keep()
        sweep = Recover(self.settings.recovery_grace_seconds, at_start=False, claim_loop=self.claim_loop)
        await self.process(sweep)

    async def close(self, grace_seconds: float = 30.0, cancel_seconds: float = 5.0) -> bool:
        """Stop: the background work first (see BackgroundTasks.close), then what it used, then the lease. Returns
        whether all the work ended; if not, the lease is kept, and the process must end (see close_or_exit)."""
        ended = await self.background.close(grace_seconds, cancel_seconds)
        await self.quick_answers.close()
        await self.home.settle()
        await self.llm.close()
        await self.memory.close()
        await self.registry.close()
        if ended:
            await self.lease.release()
        else:
            # Work that would not end holds on to what it does until the process ends; the lease goes with the
            # process, and only then may another take that work over.
            log.error("lease_kept_at_shutdown", lease=self.lease.id)
        await self.engine.dispose()
        return ended


async def close_or_exit(aios: Aios, grace_seconds: float = 30.0, cancel_seconds: float = 5.0) -> None:
    """Close a long-running process's bot; if work would not end, end the process here. asyncio.run would cancel
    that work again and wait for it with no limit, so the process (and its lease with it) would live on and no
    other process could take its work over."""
    if not await aios.close(grace_seconds, cancel_seconds):
        # Called in a `finally`: the error the process is stopping on, if any, is said here or lost with the exit.
        if (stopped_by := sys.exc_info()[1]) is not None:
            log.error("stopped_by_error", exc_info=stopped_by)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(EXIT_WORK_NOT_ENDED)


def _planner(
    settings: Settings, units: UnitOfWorkFactory, budgets: BudgetGuard, on_budget_warning: BudgetWarning
) -> LLM:
    """Claude, metered in the ledger, when a key is set; otherwise the offline grammar, which costs nothing
    and is not metered (the bot says once per thread that it is offline)."""
    if not settings.anthropic_api_key:
        return OfflinePlanner()
    # Imported here: the anthropic SDK takes most of a second to import, which every CLI command
    # would pay even when no key is set.
    from agents.claude import ClaudeLLM

    claude = ClaudeLLM.from_settings(
        settings.anthropic_api_key,
        settings.anthropic_base_url,
        dispatch_model=settings.dispatch_model,
        agent_model=settings.agent_model,
    )
    prices = PriceTable.with_overrides(settings.llm_prices)
    return MeteredLLM(
        claude, units, prices, budgets, on_budget_warning, on_model_call=observability.model_call
    )


async def bootstrap(
    settings: Settings, transport: Transport, *, clock: Callable[[], datetime] = utcnow, works: bool = True
) -> Aios:
    """The bot, wired; ``works=False`` for a front door that stores intents and leaves them to workers."""
    # Refuse a bad policy before touching anything; its conditions may name only parameters actions have.
    policy = Policy.from_file(settings.policy_file, installed_action_params())
    redactor = Redactor(settings.secrets())
    hide_secrets(redactor)
    configure_from_environment(redactor)  # traces exported by OTLP when OTEL_EXPORTER_OTLP_ENDPOINT is set
    transport = RedactingTransport(transport, redactor)
    engine = create_engine(settings.database_url)
    units = UnitOfWorkFactory.for_engine(engine)
    # Whatever fails on the way up leaves nothing behind: no lease row, no open connection, no child process.
    async with AsyncExitStack() as cleanup:
        cleanup.push_async_callback(engine.dispose)
        # Connectors (connected) and planner come before the store is migrated or a lease is taken: a
        # malformed setting is refused with nothing touched.
        registry = ConnectorRegistry.discover(
            ConnectorContext(
                units_of_work=units,
                shop_api_url=settings.shop_api_url,
                shop_api_key=settings.shop_api_key,
                http_timeout_seconds=settings.connector_timeout_seconds,
                settings=settings.connector_settings(),
                clock=clock,
            ),
            redactor,
        )
        cleanup.push_async_callback(registry.close)
        await registry.connect()  # the MCP servers' tools become actions (an unreachable one is left out)
        # Rules naming an MCP tool's parameters can be checked only now that its server is connected.
        policy.check_action_params(
            installed_action_params() | params_by_action(map(registry.model_for, registry.action_names))
        )

        async def warn_in_thread(call: CallContext, warning: str) -> None:
            try:
                await transport.post(call.channel, f":money_with_wings: {warning}", thread_ts=call.thread_ts)
            except TransportError as exc:
                log.error("budget_warning_not_delivered", error=str(exc))

        llm = _planner(settings, units, BudgetGuard(units, policy, clock), warn_in_thread)
        cleanup.push_async_callback(llm.close)
        await upgrade_to_head(engine)
        lease = await acquire_lease(engine, units)
        cleanup.push_async_callback(lease.release)
        await registry.seed()
        aios = await _wire(
            settings, transport, clock, policy, engine, units, registry, llm, lease, cleanup, works=works
        )
        cleanup.pop_all()
    return aios


async def _wire(
    settings: Settings,
    transport: Transport,
    clock: Callable[[], datetime],
    policy: Policy,
    engine: AsyncEngine,
    units: UnitOfWorkFactory,
    registry: ConnectorRegistry,
    llm: LLM,
    lease: Lease,
    cleanup: AsyncExitStack,
    *,
    works: bool,
) -> Aios:
    shop = registry.connector_for("shop.refund")
    assert isinstance(shop, OrderLookup), "the shop connector must be able to look up orders"
    orders = RedactedOrders(shop, registry.redactor)
    kinds = policy.document.memory.kinds
    retention = Retention(
        ttl={kind: rule.ttl for kind, rule in kinds.items() if rule.ttl is not None},
        cap={kind: rule.max for kind, rule in kinds.items() if rule.max is not None},
        summarise_after=policy.document.memory.summarise_after,
    )
    memory = await open_memory_store(settings, units, clock, retention)
    cleanup.push_async_callback(memory.close)
    calendar = PublishingCalendar(settings.zone, policy.document.publishing.windows, clock)
    agents: list[Agent] = [
        ReturnsAgent(llm, registry, memory, orders),
        ContentAgent(llm, registry, memory, calendar, BrandVoice(units, clock)),
        SchedulingAgent(
            llm,
            registry,
            memory,
            calendar,
            partial(holding_actions, units, name=CmsCreateDraft.name),
            BrandVoice(units, clock),
        ),
    ]
    tools = ToolsAgent(llm, registry, memory)
    if tools.action_names:
        agents.append(tools)
    dispatcher = Dispatcher(agents, llm)
    handlers = Handlers(
        units=units,
        dispatcher=dispatcher,
        policy=policy,
        registry=registry,
        transport=transport,
        clock=clock,
        offline=llm.name == OfflinePlanner.name,
        memory=memory,
        lease=lease,
        social=settings.social(),
        zone=settings.zone,
    )
    bus = MessageBus(IntentTraces.for_store(units, settings.database_url))
    handlers.register(bus)
    home = HomeRefresher(
        units=units, policy=policy, registry=registry, transport=transport, clock=clock, zone=settings.zone
    )
    home.subscribe(bus)  # after the handlers, whose own work goes first
    return Aios(
        settings=settings,
        engine=engine,
        units=units,
        policy=policy,
        registry=registry,
        bus=bus,
        handlers=handlers,
        home=home,
        memory=memory,
        background=BackgroundTasks(),
        clock=clock,
        llm=llm,
        lease=lease,
        inbox=IntentInbox(units, lease.id if works else None),
        quick_answers=quick_answers(units, clock),
        works=works,
    )
