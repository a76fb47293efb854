"""The OpenTelemetry SDK, installed only when traces have somewhere to go (imported lazily: it is heavy).

The standard variables are read by the SDK itself: `OTEL_EXPORTER_OTLP_ENDPOINT` (or its `_TRACES_` form),
`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME` (``aios`` unless set), `OTEL_RESOURCE_ATTRIBUTES`,
`OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import Event, ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
    SpanExportResult,
)
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator
from opentelemetry.trace import Status

from connectors.redaction import Redactor
from runtime import tracing


class DerivedIdGenerator(RandomIdGenerator):
    """Random ids, except for the spans whose ids are derived from a record's id (an intent's root, the wait
    for an approval), which every process must give the same ids."""

    def generate_trace_id(self) -> int:
        forced = tracing.forced_ids.get()
        return forced[0] if forced is not None else super().generate_trace_id()

    def generate_span_id(self) -> int:
        forced = tracing.forced_ids.get()
        return forced[1] if forced is not None else super().generate_span_id()


class RedactingExporter(SpanExporter):
    """Spans leave with the configured secrets taken out of their names, attributes, events (an exception's
    message and traceback) and status, as log lines do."""

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        redactor = tracing.redactor()
        return self._inner.export([_redacted(span, redactor) for span in spans] if redactor else spans)

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def _redacted(span: ReadableSpan, redactor: Redactor) -> ReadableSpan:
    status = span.status
    return ReadableSpan(
        name=redactor.text(span.name),
        context=span.context,
        parent=span.parent,
        resource=span.resource,
        attributes=redactor.data(dict(span.attributes or {})),
        events=[
            Event(event.name, redactor.data(dict(event.attributes or {})), event.timestamp)
            for event in span.events
        ],
        links=span.links,
        kind=span.kind,
        status=Status(status.status_code, redactor.text(status.description) if status.description else None),
        start_time=span.start_time,
        end_time=span.end_time,
        instrumentation_scope=span.instrumentation_scope,
    )


def install(exporter: SpanExporter, *, batch: bool = True) -> TracerProvider:
    """Make this process's tracer provider the SDK's, exporting to ``exporter`` (secrets taken out)."""
    resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or "aios"})
    provider = TracerProvider(resource=resource, id_generator=DerivedIdGenerator())
    redacting = RedactingExporter(exporter)
    provider.add_span_processor(BatchSpanProcessor(redacting) if batch else SimpleSpanProcessor(redacting))
    trace.set_tracer_provider(provider)
    tracing.enable()
    return provider


def install_otlp() -> TracerProvider:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return install(OTLPSpanExporter())
