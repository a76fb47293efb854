"""Structured logs (structlog) and Prometheus metrics, served at `GET /metrics`."""

from __future__ import annotations

import logging
import sys

import structlog
from prometheus_client import Counter, Histogram
from structlog.tracebacks import ExceptionDictTransformer

SLACK_REQUESTS = Counter("aios_slack_requests_total", "Slack requests received", ["kind"])
ACK_SECONDS = Histogram(
    "aios_slack_ack_seconds",
    "Time from receiving a Slack request to answering it",
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
INTENTS = Counter("aios_intents_total", "Intents accepted", ["source"])
DECISIONS = Counter("aios_decisions_total", "Decisions recorded", ["verdict"])
EXECUTIONS = Counter("aios_executions_total", "Connector executions", ["outcome"])
BACKGROUND_FAILURES = Counter("aios_background_failures_total", "Background work that raised")


def configure_logging(*, json: bool, level: int = logging.INFO) -> None:
    """JSON lines for servers, readable lines for the terminal; always on stderr, never mixed with output.

    Libraries log through the standard `logging` module (Bolt's warnings are several lines of plain text);
    those records go through the same renderer, so with ``json`` every line of output is one JSON object and
    tracebacks are structured fields, never raw text."""
    shared: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    tail: list[structlog.typing.Processor] = (
        [
            # Frames' local variables stay out of the log: they hold tokens, secrets and customers' data.
            structlog.processors.ExceptionRenderer(ExceptionDictTransformer(show_locals=False)),
            structlog.processors.JSONRenderer(),
        ]
        if json
        else [structlog.processors.format_exc_info, structlog.dev.ConsoleRenderer(colors=False)]
    )
    structlog.configure(
        processors=[*shared, *tail],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # One write per line, so lines from structlog and from `logging` never interleave.
        logger_factory=structlog.WriteLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *tail],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(max(level, logging.WARNING))  # libraries speak only when something is wrong
