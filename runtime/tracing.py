"""One OpenTelemetry trace per intent, across processes, restarts and the wait for a click.

The trace id and the id of the intent's root span are derived from the intent's id (and the store it lives in),
so a span made by any process, hours later, after a restart or on another replica, lands in the same trace
without the trace context being stored anywhere. Messages on the bus that name an action, approval, execution or
run are traced to their intent with one small query (remembered); their follow-ups inherit it. The approvals
and runs an intent's work makes are remembered as they are made: a click taken by the process that drew its card
is traced without a query, so tracing adds no SQL to a gated action.

Only the OpenTelemetry API is imported here: without `OTEL_EXPORTER_OTLP_ENDPOINT` no SDK is loaded, the tracer
is the API's no-op one, and the bus asks no questions of the store.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from contextvars import ContextVar
from dataclasses import dataclass, replace
from datetime import datetime

import structlog
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Link, NonRecordingSpan, Span, SpanContext, SpanKind, TraceFlags
from sqlalchemy.engine.url import make_url
from sqlmodel import col, select

from connectors.redaction import Redactor
from storage.ids import format_id
from storage.records import Approval, Execution, ProposedAction, Run
from storage.unit_of_work import UnitOfWorkFactory

log = structlog.get_logger(__name__)

tracer = trace.get_tracer("aios")

# Set by the SDK set-up (runtime.tracing_setup) once a tracer provider that records is installed.
_enabled = False
_redactor = Redactor()

# Read by the SDK's id generator (runtime.tracing_setup): the ids the next span must have, when they are derived.
forced_ids: ContextVar[tuple[int, int] | None] = ContextVar("aios_forced_span_ids", default=None)


def configure_from_environment(redactor: Redactor) -> None:
    """Install the SDK with the OTLP exporter when an endpoint is set; otherwise leave the API's no-op tracer.
    Spans leave with ``redactor``'s secrets taken out (the latest bot's, when a process starts several)."""
    global _redactor
    _redactor = redactor
    if _enabled or os.environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return
    if not (
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    ):
        return
    from runtime.tracing_setup import install_otlp

    install_otlp()


def redactor() -> Redactor:
    """What every exported span is scrubbed with: the secrets of the settings the process started with."""
    return _redactor


def enable() -> None:
    global _enabled
    _enabled = True


def enabled() -> bool:
    return _enabled


@dataclass(frozen=True)
class IntentScope:
    """Where the spans of one message go: its intent's trace (when it has one) under ``parent``."""

    intent_id: int | None
    namespace: str
    parent: Context
    traces: IntentTraces  # what remembers the records made in this scope


_scope: ContextVar[IntentScope | None] = ContextVar("aios_intent_scope", default=None)


def _derived(namespace: str, kind: str, key: int, size: int) -> int:
    digest = hashlib.sha256(f"{namespace}\x00{kind}\x00{key}".encode()).digest()
    return int.from_bytes(digest[:size], "big") or 1  # zero is the invalid id


def intent_trace_id(namespace: str, intent_id: int) -> int:
    return _derived(namespace, "intent", intent_id, 16)


def intent_root(namespace: str, intent_id: int) -> SpanContext:
    """The intent's root span, as any process can name it."""
    return SpanContext(
        trace_id=intent_trace_id(namespace, intent_id),
        span_id=_derived(namespace, "intent-root", intent_id, 8),
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )


def approval_wait(namespace: str, intent_id: int, approval_id: int) -> SpanContext:
    """The span of the wait for an approval: the click that ends it links to it."""
    return SpanContext(
        trace_id=intent_trace_id(namespace, intent_id),
        span_id=_derived(namespace, "approval", approval_id, 8),
        is_remote=True,
        trace_flags=TraceFlags(TraceFlags.SAMPLED),
    )


def store_namespace(database_url: str) -> str:
    """What keeps two installations' intent 1 apart: the store's address, without its credentials."""
    try:
        url = make_url(database_url)
        return url.set(username=None, password=None).render_as_string(hide_password=False)
    except Exception:
        return "aios"


@contextmanager
def _with_ids(trace_id: int, span_id: int) -> Iterator[None]:
    token = forced_ids.set((trace_id, span_id))
    try:
        yield
    finally:
        forced_ids.reset(token)


@dataclass
class _Ack:
    """A Slack request being answered: its span is made by the first message it hands to the bus, which
    knows the intent, and ended by whichever of the two finishes last."""

    started_ns: int
    kind: str
    answered_ns: int | None = None
    span: Span | None = None
    claimed: bool = False


_ack: ContextVar[_Ack | None] = ContextVar("aios_slack_ack", default=None)


_UNTRACED = nullcontext()


def slack_ack(kind: str) -> AbstractContextManager[None]:
    """Around the answer to a Slack request; the work it hands to the background carries it along. Without
    tracing, a context that does nothing, made once: a generator's context manager, even one that only yields,
    is a measurable part of an ack's CPU."""
    return _traced_ack(kind) if _enabled else _UNTRACED


@contextmanager
def _traced_ack(kind: str) -> Iterator[None]:
    ack = _Ack(started_ns=time.time_ns(), kind=kind)
    token = _ack.set(ack)
    try:
        yield
    finally:
        _ack.reset(token)
        ack.answered_ns = time.time_ns()
        if ack.span is not None:
            ack.span.end(end_time=ack.answered_ns)


def _ack_span(parent: Context) -> None:
    """The span of the Slack ack that handed this message over, if any, beside the message's."""
    ack = _ack.get()
    if ack is None or ack.claimed:
        return
    ack.claimed = True
    ack.span = tracer.start_span(
        "slack.ack",
        context=parent,
        kind=SpanKind.SERVER,
        start_time=ack.started_ns,
        attributes={"aios.slack.payload": ack.kind},
    )
    if ack.answered_ns is not None:
        ack.span.end(end_time=ack.answered_ns)


class IntentTraces:
    """Puts each message the bus handles into the trace of its intent."""

    CACHE_SIZE = 4096

    def __init__(self, units: UnitOfWorkFactory, namespace: str) -> None:
        self._units = units
        self.namespace = namespace
        self._intents: OrderedDict[tuple[str, int], int | None] = OrderedDict()

    @classmethod
    def for_store(cls, units: UnitOfWorkFactory, database_url: str) -> IntentTraces:
        return cls(units, store_namespace(database_url))

    async def scope(self, message: object, inherited: IntentScope | None) -> IntentScope | None:
        """Follow-ups stay in the trace of the message they follow from; the rest find their intent."""
        if not _enabled:
            return None
        if inherited is not None and inherited.intent_id is not None:
            return inherited
        intent_id = await self._intent_of(message)
        if intent_id is None:  # work of no intent (a sweep, a pause): under what handed it on, if anything
            return inherited or IntentScope(None, self.namespace, Context(), self)
        root = intent_root(self.namespace, intent_id)
        return IntentScope(intent_id, self.namespace, trace.set_span_in_context(NonRecordingSpan(root)), self)

    @contextmanager
    def span(self, message: object, scope: IntentScope | None, *, root: bool) -> Iterator[IntentScope | None]:
        """The span of one message; what it hands on is its children. ``root``: the message was handed to the
        bus (not a follow-up), so it may open the intent's trace or carry the ack that handed it over."""
        if scope is None:
            yield None
            return
        name = type(message).__name__
        parent = scope.parent
        intent_span: Span | None = None
        if root:
            if scope.intent_id is not None and name in ("HandleIntent", "ProposeAction"):
                intent_span = self._open_intent(scope.intent_id)
                parent = trace.set_span_in_context(intent_span)
            _ack_span(parent)
        links = self._links(message, scope)
        attributes: dict[str, str] = {"aios.message": name}
        if scope.intent_id is not None:
            attributes["aios.intent"] = format_id("I", scope.intent_id)
        try:
            with tracer.start_as_current_span(
                name, context=parent, links=links, attributes=attributes
            ) as span:
                inner = replace(scope, parent=trace.set_span_in_context(span))
                token = _scope.set(inner)
                try:
                    yield inner
                finally:
                    _scope.reset(token)
        finally:
            if intent_span is not None:
                intent_span.end()

    def _open_intent(self, intent_id: int) -> Span:
        root = intent_root(self.namespace, intent_id)
        with _with_ids(root.trace_id, root.span_id):
            return tracer.start_span(
                "intent", context=Context(), attributes={"aios.intent": format_id("I", intent_id)}
            )

    def _links(self, message: object, scope: IntentScope) -> list[Link]:
        approval_id = getattr(message, "approval_id", None)
        if scope.intent_id is None or not isinstance(approval_id, int):
            return []
        waited = approval_wait(self.namespace, scope.intent_id, approval_id)
        return [Link(waited, {"aios.link": "approval_wait", "aios.approval": format_id("AP", approval_id)})]

    async def _intent_of(self, message: object) -> int | None:
        intent_id = getattr(message, "intent_id", None)
        if isinstance(intent_id, int):
            return intent_id
        for field in ("approval_id", "action_id", "execution_id", "run_id"):
            key = getattr(message, field, None)
            if isinstance(key, int):
                return await self._remembered(field, key)
        return None

    async def _remembered(self, field: str, key: int) -> int | None:
        if (field, key) in self._intents:
            self._intents.move_to_end((field, key))
            return self._intents[(field, key)]
        try:
            intent_id = await self._look_up(field, key)
        except Exception as exc:
            # Tracing never stops the work: the message is traced on its own instead.
            log.warning("trace_intent_lookup_failed", field=field, key=key, error=type(exc).__name__)
            return None
        if intent_id is not None:
            self.remember(field, key, intent_id)
        return intent_id

    def remember(self, field: str, key: int, intent_id: int) -> None:
        self._intents[(field, key)] = intent_id
        if len(self._intents) > self.CACHE_SIZE:
            self._intents.popitem(last=False)

    async def _look_up(self, field: str, key: int) -> int | None:
        query = select(Run.intent_id)
        if field == "run_id":
            query = query.where(col(Run.id) == key)
        else:
            query = query.join(ProposedAction, col(ProposedAction.run_id) == col(Run.id))
            if field == "action_id":
                query = query.where(col(ProposedAction.id) == key)
            elif field == "approval_id":
                query = query.join(Approval, col(Approval.action_id) == col(ProposedAction.id))
                query = query.where(col(Approval.id) == key)
            else:
                query = query.join(Execution, col(Execution.action_id) == col(ProposedAction.id))
                query = query.where(col(Execution.id) == key)
        async with self._units() as uow:
            return (await uow.session.exec(query)).first()


def made_for_intent(field: str, key: int) -> None:
    """A record made by the work of the intent being traced (``field`` names it as messages do: approval_id,
    run_id): a message that names it later, in this process, is traced to the intent without asking the store."""
    scope = _scope.get()
    if scope is not None and scope.intent_id is not None:
        scope.traces.remember(field, key, scope.intent_id)


def approval_waited(approval_id: int, requested_at: datetime, decided_at: datetime, outcome: str) -> None:
    """The wait for an approval, from the request to the decision, in its intent's trace; the click's span
    links to it. Called by the handler that decides, inside the click's span."""
    scope = _scope.get()
    if scope is None or scope.intent_id is None:
        return
    waited = approval_wait(scope.namespace, scope.intent_id, approval_id)
    parent = trace.set_span_in_context(NonRecordingSpan(intent_root(scope.namespace, scope.intent_id)))
    with _with_ids(waited.trace_id, waited.span_id):
        span = tracer.start_span(
            "approval.wait",
            context=parent,
            start_time=_ns(requested_at),
            attributes={"aios.approval": format_id("AP", approval_id), "aios.approval.outcome": outcome},
        )
    span.end(end_time=max(_ns(decided_at), _ns(requested_at)))


def _ns(moment: datetime) -> int:
    return int(moment.timestamp() * 1_000_000_000)
