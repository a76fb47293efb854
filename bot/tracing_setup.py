"""The OpenTelemetry SDK, installed only when traces have somewhere to go (imported lazily: it is heavy).

The standard variables are read by the SDK itself: `OTEL_EXPORTER_OTLP_ENDPOINT` (or its `_TRACES_` form),
`OTEL_EXPORTER_OTLP_HEADERS`, `OTEL_SERVICE_NAME` (``aios`` unless set), `OTEL_RESOURCE_ATTRIBUTES`,
`OTEL_TRACES_SAMPLER`, `OTEL_BSP_*`.
"""

from __future__ import annotations

import os

from opentelemetry import trace
from opentelemetry.sdk.resources import SERVICE_NAME, Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter
from opentelemetry.sdk.trace.id_generator import RandomIdGenerator

from bot import tracing


class DerivedIdGenerator(RandomIdGenerator):
    """Random ids, except for the spans whose ids are derived from a record's id (an intent's root, the wait
    for an approval), which every process must give the same ids."""

    def generate_trace_id(self) -> int:
        forced = tracing.forced_ids.get()
        return forced[0] if forced is not None else super().generate_trace_id()

    def generate_span_id(self) -> int:
        forced = tracing.forced_ids.get()
        return forced[1] if forced is not None else super().generate_span_id()


def install(exporter: SpanExporter, *, batch: bool = True) -> TracerProvider:
    """Make this process's tracer provider the SDK's, exporting to ``exporter``."""
    resource = Resource.create({SERVICE_NAME: os.environ.get("OTEL_SERVICE_NAME") or "aios"})
    provider = TracerProvider(resource=resource, id_generator=DerivedIdGenerator())
    provider.add_span_processor(BatchSpanProcessor(exporter) if batch else SimpleSpanProcessor(exporter))
    trace.set_tracer_provider(provider)
    tracing.enable()
    return provider


def install_otlp() -> TracerProvider:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return install(OTLPSpanExporter())
