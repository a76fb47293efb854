"""Structured logs (structlog): JSON lines for servers, readable lines for the terminal.

Apart from the metrics, so that a terminal command can set up its logging without importing Prometheus."""

from __future__ import annotations

import logging
import sys

import structlog
from structlog.tracebacks import ExceptionDictTransformer
from structlog.typing import EventDict, WrappedLogger

from connectors.redaction import Redactor

_redactor = Redactor()


def hide_secrets(redactor: Redactor) -> None:
    """From now on, every log line is written with these secrets replaced (the composition root calls this
    once the settings are read; lines before that hold no setting's value)."""
    global _redactor
    _redactor = redactor


def _without_secrets(logger: WrappedLogger, method: str, event: EventDict) -> EventDict:
    # Last before rendering: the event's values, a library's message and a rendered traceback are all here.
    redacted: EventDict = _redactor.data(event)
    for key, value in redacted.items():
        if not isinstance(value, str | dict | list | tuple | int | float | None):
            # Rendered by its repr, which may show a secret an attribute holds.
            shown = repr(value)
            if _redactor.leaks(shown):
                redacted[key] = _redactor.text(shown)
    return redacted


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
            _without_secrets,
            structlog.processors.JSONRenderer(),
        ]
        if json
        else [
            structlog.processors.format_exc_info,
            _without_secrets,
            structlog.dev.ConsoleRenderer(colors=False),
        ]
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
