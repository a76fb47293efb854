"""A small message bus (cosmicpython style): a command goes to one handler, an event to every subscriber.

Handlers return the messages that follow from their work; the bus processes them in order. Messages that follow
from one handler are independent pieces of work (recovery hands back one per stranded intent, run and execution),
so one that fails does not keep its siblings from running: the bus goes on with the rest of the queue and raises
the first failure when the queue is empty, so the caller still learns of it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Awaitable, Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import structlog

from runtime.messages import Command, Event, log_fields
from runtime.tracing import IntentScope, IntentTraces, tracer
from runtime.tracing import enabled as tracing_enabled

Message = Command | Event
Handler = Callable[[Any], Awaitable[Sequence[Message]]]

log = structlog.get_logger(__name__)


class MessageBus:
    def __init__(self, traces: IntentTraces | None = None) -> None:
        self._traces = traces  # a span per message, in the trace of its intent
        self._command_handlers: dict[type[Command], Handler] = {}
        self._event_handlers: dict[type[Event], list[Handler]] = defaultdict(list)

    def on_command(self, command: type[Command], handler: Handler) -> None:
        if command in self._command_handlers:
            raise ValueError(f"{command.__name__} already has a handler")
        self._command_handlers[command] = handler

    def on_event(self, event: type[Event], handler: Handler) -> None:
        self._event_handlers[event].append(handler)

    def subscribers(self, event: type[Event]) -> tuple[Handler, ...]:
        """Who hears ``event``, in the order they hear it."""
        return tuple(self._event_handlers.get(event, []))

    async def handle(self, message: Message) -> None:
        # Each message waits with the trace scope of the one it follows from (None for the first).
        queue: list[tuple[Message, IntentScope | None]] = [(message, None)]
        failure: Exception | None = None
        while queue:
            current, inherited = queue.pop(0)
            with await self._span(current, inherited, root=current is message) as scope:
                followups = await self._dispatch(current, message)
                if isinstance(followups, Exception):
                    failure = failure or followups
                    continue
                queue.extend((followup, scope) for followup in followups)
        if failure is not None:
            raise failure

    async def _dispatch(self, current: Message, first: Message) -> Sequence[Message] | Exception:
        """The follow-ups of one message, or the failure of a command other than the first (which raises)."""
        if isinstance(current, Command):
            handler = self._command_handlers.get(type(current))
            if handler is None:
                raise LookupError(f"no handler for {type(current).__name__}")
            try:
                return await handler(current)
            except Exception as exc:
                if current is first:
                    raise
                log.exception("command_failed", **log_fields(current))
                return exc
        followups: list[Message] = []
        for subscriber in self._event_handlers.get(type(current), []):
            # One subscriber's failure must not keep the others from hearing the event.
            try:
                with self._subscriber_span(subscriber):
                    followups.extend(await subscriber(current))
            except Exception:
                log.exception("event_handler_failed", message_type=type(current).__name__)
        return followups

    def _subscriber_span(self, subscriber: Handler) -> AbstractContextManager[object]:
        """Under an event's span, one per subscriber (Compensation.compensate, Executions.report_failure…)."""
        if self._traces is None or not tracing_enabled():
            return nullcontext()
        return tracer.start_as_current_span(getattr(subscriber, "__qualname__", type(subscriber).__name__))

    async def _span(
        self, current: Message, inherited: IntentScope | None, *, root: bool
    ) -> AbstractContextManager[IntentScope | None]:
        if self._traces is None:
            return nullcontext()
        scope = await self._traces.scope(current, inherited)
        return self._traces.span(current, scope, root=root)
