"""Traces through the whole bot, recorded by the OpenTelemetry SDK's in-memory exporter: one trace per intent,
across a restart and the wait for a click."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode
from sqlalchemy import event
from sqlmodel import col, select

from bot.bootstrap import Aios
from connectors.base import ConnectorContext
from connectors.errors import PermanentConnectorError
from connectors.registry import ConnectorRegistry
from connectors.sandbox_cms import SandboxCms
from connectors.sandbox_shop import SandboxShop
from runtime import tracing
from runtime.handlers import Handlers
from runtime.intake import IncomingIntent
from runtime.messagebus import MessageBus
from runtime.messages import DecideApproval, HandleIntent
from runtime.tracing import IntentTraces, intent_trace_id, store_namespace
from storage.records import Approval
from tests.conftest import Clock
from tests.fakes.anthropic_api import API_KEY, FakeAnthropicApi, Reply, ToolUse
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import CHANNEL, MANAGER, ask, start_aios
from tests.integration.test_compensation import PERMISSIVE, BrokenOutbox

_EXPORTER = InMemorySpanExporter()


@pytest.fixture
def spans(monkeypatch: pytest.MonkeyPatch) -> Iterator[InMemorySpanExporter]:
    """The SDK installed once for this process (as `aios serve` does with an endpoint), spans kept in memory.
    Tracing is on for this test only: the tests after it in the process run untraced, as they do alone."""
    monkeypatch.setattr(tracing, "_enabled", False)  # put back at teardown, whatever the test turned on
    if not isinstance(trace.get_tracer_provider(), TracerProvider):
        from runtime.tracing_setup import install

        install(_EXPORTER, batch=False)
    tracing.enable()
    _EXPORTER.clear()
    yield _EXPORTER
    _EXPORTER.clear()


ROUTE_TO_RETURNS = Reply("", (ToolUse("route_to_agent", {"agent": "returns", "reason": "a refund"}),))
REFUND_1001 = Reply(
    "Refunding $250.",
    (ToolUse("shop_refund", {"order_id": 1001, "amount": 250.0, "reason": "arrived broken"}),),
)


async def only_approval_id(aios: Aios) -> int:
    async with aios.units() as uow:
        [approval] = (await uow.session.exec(select(Approval))).all()
    assert approval.id is not None
    return approval.id


async def test_a_gated_refund_is_one_trace_across_a_restart_and_the_click(
    spans: InMemorySpanExporter,
    database_url: str,
    slack_api: FakeSlackApi,
    anthropic_api: FakeAnthropicApi,
    clock: Clock,
    tmp_path: Path,
) -> None:
    anthropic_api.script(ROUTE_TO_RETURNS, REFUND_1001)
    first = await start_aios(
        database_url,
        slack_api,
        clock,
        tmp_path,
        ANTHROPIC_API_KEY=API_KEY,
        ANTHROPIC_BASE_URL=anthropic_api.url,
    )
    try:
        intent_id = await ask(first, "the customer on order 1001 says it came in pieces, sort it out")
        approval_id = await only_approval_id(first)
    finally:
        await first.close()
    # Another process on the same store takes the click: nothing of the first one's memory is left.
    second = await start_aios(database_url, slack_api, clock, tmp_path)
    try:
        await second.process(DecideApproval(approval_id, MANAGER, approve=True, channel=CHANNEL))
    finally:
        await second.close()

    finished = list(spans.get_finished_spans())
    trace_id = intent_trace_id(store_namespace(database_url), intent_id)
    of_intent = [s for s in finished if s.context is not None and s.context.trace_id == trace_id]
    names = [s.name for s in of_intent]
    for expected in (
        "intent",
        "HandleIntent",
        "route",
        "chat claude-haiku-4-5",
        "plan",
        "chat claude-sonnet-4-6",
        "policy.evaluate",
        "DecideApproval",
        "approval.wait",
        "ActionApproved",
        "Executions.execute_when_cleared",
        "execute shop.refund",
        "ActionExecuted",
    ):
        assert expected in names, f"{expected} missing from {names}"
    # Every span named for this intent is in its trace, and the trace is one tree under the intent's root.
    assert all(
        s in of_intent for s in finished if (s.attributes or {}).get("aios.intent") == f"I-{intent_id}"
    )
    ids = {s.context.span_id for s in of_intent if s.context is not None}
    [root] = [s for s in of_intent if s.parent is None]
    assert root.name == "intent"
    assert all(s.parent.span_id in ids for s in of_intent if s.parent is not None)

    routing, planning = (
        by_name(of_intent, "chat claude-haiku-4-5"),
        by_name(of_intent, "chat claude-sonnet-4-6"),
    )
    assert routing.attributes is not None and planning.attributes is not None
    assert routing.attributes["gen_ai.request.model"] == "claude-haiku-4-5"
    assert routing.attributes["aios.agent"] == "dispatcher"
    assert planning.attributes["aios.agent"] == "returns"
    assert planning.attributes["gen_ai.provider.name"] == "anthropic"
    assert int(planning.attributes["gen_ai.usage.input_tokens"]) > 0  # type: ignore[arg-type]
    assert int(planning.attributes["gen_ai.usage.output_tokens"]) > 0  # type: ignore[arg-type]
    assert float(planning.attributes["aios.llm.cost_usd"]) > 0  # type: ignore[arg-type]
    handle = by_name(of_intent, "HandleIntent")
    for step, under in (
        (routing, "route"),
        (planning, "plan"),
        (by_name(of_intent, "route"), "HandleIntent"),
    ):
        assert step.parent is not None and step.parent.span_id == by_name(of_intent, under).context.span_id
    policy = by_name(of_intent, "policy.evaluate")
    assert policy.parent is not None and policy.parent.span_id == handle.context.span_id

    # The click, taken by the second process, links to the wait it ended (begun when the first asked).
    click, wait = by_name(of_intent, "DecideApproval"), by_name(of_intent, "approval.wait")
    assert [link.context.span_id for link in click.links] == [wait.context.span_id]
    assert wait.attributes is not None and wait.attributes["aios.approval.outcome"] == "approved"
    assert wait.start_time is not None and wait.start_time <= by_name(of_intent, "HandleIntent").end_time  # type: ignore[operator]

    connector = by_name(of_intent, "execute shop.refund")
    assert connector.attributes is not None and connector.attributes["aios.connector"] == "SandboxShop"
    # The click claimed the execution: the approval's subscriber calls the connector.
    execute = by_name(of_intent, "Executions.execute_when_cleared")
    assert connector.parent is not None and connector.parent.span_id == execute.context.span_id


def by_name(found: list[ReadableSpan], name: str) -> ReadableSpan:
    [span] = [s for s in found if s.name == name]
    return span


async def test_each_intent_has_its_own_trace(
    spans: InMemorySpanExporter, database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await start_aios(database_url, slack_api, clock, tmp_path)
    try:
        small = await ask(aios, "refund $40 on order 1002, strap tore")  # allowed: runs at once
        other = await ask(aios, "refund $30 on order 1003, late", thread_ts="1700000000.000200")
    finally:
        await aios.close()
    namespace = store_namespace(database_url)
    finished = spans.get_finished_spans()
    for intent_id in (small, other):
        trace_id = intent_trace_id(namespace, intent_id)
        names = {s.name for s in finished if s.context is not None and s.context.trace_id == trace_id}
        assert {"intent", "HandleIntent", "ActionAllowed", "ExecuteAction", "execute shop.refund"} <= names
    assert intent_trace_id(namespace, small) != intent_trace_id(namespace, other)


async def test_tracing_adds_no_sql_to_a_click_taken_where_its_card_was_drawn(
    spans: InMemorySpanExporter,
    database_url: str,
    slack_api: FakeSlackApi,
    clock: Clock,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    aios = await start_aios(database_url, slack_api, clock, tmp_path)
    sql = Statements()
    event.listen(aios.engine.sync_engine, "before_cursor_execute", sql.sent)
    try:
        traced = await ask(aios, "refund $150 on order 1001, arrived broken")
        await ask(aios, "refund $120 on order 1003, wrong size", thread_ts="1700000000.000200")
        async with aios.units() as uow:
            first, second = (await uow.session.exec(select(Approval).order_by(col(Approval.id)))).all()
        assert first.id is not None and second.id is not None
        with_tracing = await sql.of(aios, DecideApproval(first.id, MANAGER, approve=True, channel=CHANNEL))
        monkeypatch.setattr(tracing, "_enabled", False)
        without = await sql.of(aios, DecideApproval(second.id, MANAGER, approve=True, channel=CHANNEL))
    finally:
        await aios.close()
        event.remove(aios.engine.sync_engine, "before_cursor_execute", sql.sent)

    assert with_tracing == without
    # The click was traced all the same, into its intent's trace.
    trace_id = intent_trace_id(store_namespace(database_url), traced)
    assert any(
        s.name == "DecideApproval" and s.context is not None and s.context.trace_id == trace_id
        for s in spans.get_finished_spans()
    )


class Statements:
    """The statements a message's handling sends, each by its first words. Neither the App Home's redraw (a
    task of its own, run whenever it gets its turn) nor the audit chain's (its lock, and its head read only when
    another process may have moved it) are the message's."""

    def __init__(self) -> None:
        self._task: asyncio.Task[object] | None = None
        self._sent: list[str] = []

    def sent(self, _conn: object, _cursor: object, statement: str, *_: object) -> None:
        if asyncio.current_task() is self._task and not (
            "audit_entry" in statement or "advisory" in statement
        ):
            self._sent.append(" ".join(statement.split()[:3]))

    async def of(self, aios: Aios, message: DecideApproval) -> list[str]:
        self._task, self._sent = asyncio.current_task(), []
        try:
            await aios.process(message)
        finally:
            self._task = None
        return self._sent


def _python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


CHECK_PROVIDER = """
import sys
from runtime.tracing import configure_from_environment
from connectors.redaction import Redactor
configure_from_environment(Redactor())
from opentelemetry import trace
print(type(trace.get_tracer_provider()).__module__, "opentelemetry.sdk" in sys.modules)
"""


def test_without_an_endpoint_no_sdk_is_loaded_and_with_one_it_is() -> None:
    without = _python(CHECK_PROVIDER)
    assert without.returncode == 0, without.stderr
    assert without.stdout.split() == ["opentelemetry.trace", "False"]  # the API's no-op proxy
    with_endpoint = _python(CHECK_PROVIDER, OTEL_EXPORTER_OTLP_ENDPOINT="http://127.0.0.1:1")
    assert with_endpoint.returncode == 0, with_endpoint.stderr
    assert with_endpoint.stdout.split() == ["opentelemetry.sdk.trace", "True"]


async def test_a_failed_step_and_its_compensation_are_in_the_intent_trace(
    spans: InMemorySpanExporter, database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await start_aios(database_url, slack_api, clock, tmp_path, policy=PERMISSIVE)
    try:
        context = ConnectorContext(units_of_work=aios.units)
        # The bot's bus, but with an outbox that refuses every email.
        bus = MessageBus(IntentTraces.for_store(aios.units, database_url))
        handlers = aios.handlers
        Handlers(
            units=aios.units,
            dispatcher=handlers.dispatcher,
            policy=aios.policy,
            registry=ConnectorRegistry(
                [
                    SandboxShop(context),
                    SandboxCms(context),
                    BrokenOutbox(PermanentConnectorError("550 no such user")),
                ]
            ),
            transport=handlers.transport,
            clock=handlers.clock,
            offline=True,
            memory=aios.memory,
            lease=aios.lease,
        ).register(bus)
        intent_id = await aios.accept(
            IncomingIntent(
                source="mention",
                team_id="T",
                channel=CHANNEL,
                thread_ts="1.7",
                user="U0ALICE",
                text="refund $5 on order 1002 and tell the customer",
            )
        )
        assert intent_id is not None
        await bus.handle(HandleIntent(intent_id))
    finally:
        await aios.close()

    trace_id = intent_trace_id(store_namespace(database_url), intent_id)
    of_intent = [
        s for s in spans.get_finished_spans() if s.context is not None and s.context.trace_id == trace_id
    ]
    failed, compensate = by_name(of_intent, "ActionFailed"), by_name(of_intent, "Compensation.compensate")
    assert compensate.parent is not None and compensate.parent.span_id == failed.context.span_id
    email = by_name(of_intent, "execute email.send")
    assert email.status.status_code == StatusCode.ERROR
    assert [e.name for e in email.events] == ["exception"]
