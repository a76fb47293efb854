from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from runtime.messagebus import Message, MessageBus
from runtime.messages import Command, Event


@dataclass(frozen=True)
class Start(Command):
    n: int


@dataclass(frozen=True)
class Started(Event):
    n: int


async def test_commands_lead_to_events_in_order_and_a_failing_subscriber_does_not_stop_others() -> None:
    seen: list[str] = []

    async def start(command: Start) -> Sequence[Message]:
        seen.append(f"start {command.n}")
        return [Started(command.n)]

    async def broken(event: Started) -> Sequence[Message]:
        raise RuntimeError("boom")

    async def record(event: Started) -> Sequence[Message]:
        seen.append(f"started {event.n}")
        return [Start(event.n + 1)] if event.n < 2 else []

    bus = MessageBus()
    bus.on_command(Start, start)
    bus.on_event(Started, broken)
    bus.on_event(Started, record)
    await bus.handle(Start(1))
    assert seen == ["start 1", "started 1", "start 2", "started 2"]


async def test_a_command_without_a_handler_is_an_error() -> None:
    with pytest.raises(LookupError):
        await MessageBus().handle(Start(1))


def test_a_command_has_one_handler() -> None:
    bus = MessageBus()

    async def handler(command: Start) -> Sequence[Message]:
        return []

    bus.on_command(Start, handler)
    with pytest.raises(ValueError, match="already"):
        bus.on_command(Start, handler)


@dataclass(frozen=True)
class Fan(Command):
    ns: tuple[int, ...]


async def test_a_failing_follow_up_does_not_keep_its_siblings_from_running_and_is_raised_at_the_end() -> None:
    """Recovery hands back one command per stranded piece of work: one that fails must not strand the rest."""
    ran: list[int] = []

    async def fan(command: Fan) -> Sequence[Message]:
        return [Start(n) for n in command.ns]

    async def start(command: Start) -> Sequence[Message]:
        if command.n == 2:
            raise RuntimeError("the second piece of work fails")
        ran.append(command.n)
        return []

    bus = MessageBus()
    bus.on_command(Fan, fan)
    bus.on_command(Start, start)
    with pytest.raises(RuntimeError, match="second piece"):
        await bus.handle(Fan((1, 2, 3, 4)))
    assert ran == [1, 3, 4]


async def test_the_first_commands_own_failure_is_raised_at_once() -> None:
    async def start(command: Start) -> Sequence[Message]:
        raise RuntimeError("no")

    bus = MessageBus()
    bus.on_command(Start, start)
    with pytest.raises(RuntimeError, match="no"):
        await bus.handle(Start(1))


def test_a_log_line_names_a_message_by_its_type_and_ids_never_its_words() -> None:
    from runtime.messages import ProposeAction, log_fields

    proposal = ProposeAction(
        7, "returns", "email.send", {"to": "ana@example.com", "body": "Your order"}, "she asked", undoes=3
    )
    assert log_fields(proposal) == {"message_type": "ProposeAction", "intent_id": 7, "undoes": 3}
