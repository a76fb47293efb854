"""Spans leave the process with the configured secrets taken out, as log lines do."""

from __future__ import annotations

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from connectors.redaction import Redactor, Secret
from runtime.tracing import configure_from_environment
from runtime.tracing_setup import RedactingExporter

STRIPE_KEY = "sk_test_4eC39HqLyjWDarjtT1zdp7dc"


def test_secrets_are_taken_out_of_names_attributes_exceptions_and_status() -> None:
    configure_from_environment(Redactor([Secret("STRIPE_API_KEY", STRIPE_KEY)]))
    exported = InMemorySpanExporter()
    provider = TracerProvider()  # this test's own, not the process's
    provider.add_span_processor(SimpleSpanProcessor(RedactingExporter(exported)))
    tracer = provider.get_tracer("test")
    try:
        with tracer.start_as_current_span(
            f"call {STRIPE_KEY}", attributes={"url": f"https://x/?key={STRIPE_KEY}"}
        ):
            raise RuntimeError(f"401: invalid key {STRIPE_KEY}")
    except RuntimeError:
        pass
    finally:
        configure_from_environment(Redactor())

    [span] = exported.get_finished_spans()
    shown = repr(
        (span.name, dict(span.attributes or {}), [dict(e.attributes or {}) for e in span.events], span.status)
    )
    assert STRIPE_KEY not in shown
    assert (
        "[REDACTED:STRIPE_API_KEY]" in str(span.attributes)
        and "invalid key [REDACTED:STRIPE_API_KEY]" in shown
    )
    assert [e.name for e in span.events] == ["exception"]  # the exception is kept, without the key
