"""One contract for every mail connector: the sandbox outbox must behave like real SMTP (a real aiosmtpd server).

A "crash between sent and recorded" is a message sent by one connector instance and asked about by a fresh
one, which knows nothing but what the store and the server keep.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import pytest

from connectors.actions import Action, EmailSend
from connectors.base import ConnectorContext
from connectors.errors import PermanentConnectorError
from connectors.sandbox_outbox import SandboxOutbox
from connectors.sandbox_state import sandbox_state
from connectors.smtp_mail import SmtpMail
from storage.engine import create_engine
from storage.migrate import upgrade_to_head
from storage.unit_of_work import UnitOfWorkFactory
from tests.fakes.smtp_server import FakeSmtpServer


class Mailer(Protocol):
    async def execute(self, action: Action, idempotency_key: str) -> dict[str, Any]: ...
    async def lookup(self, action: Action, idempotency_key: str) -> dict[str, Any] | None: ...


@dataclass
class Outbox:
    """Connector instances on one outbox's data, and what actually went out (recipient, subject)."""

    new: Callable[[], Mailer]
    sent: Callable[[], Awaitable[list[tuple[str, str]]]]
    real: bool


@pytest.fixture
def smtp_server() -> Iterator[FakeSmtpServer]:
    with FakeSmtpServer() as server:
        yield server


@pytest.fixture(params=["sandbox", "smtp"])
async def outbox(request: pytest.FixtureRequest, database_url: str) -> AsyncIterator[Outbox]:
    engine = create_engine(database_url)
    await upgrade_to_head(engine)
    units = UnitOfWorkFactory.for_engine(engine)
    if request.param == "smtp":
        server: FakeSmtpServer = request.getfixturevalue("smtp_server")
        settings = {"AIOS_SMTP_URL": server.url, "AIOS_MAIL_FROM": "Shop <shop@example.com>"}
        context = ConnectorContext(units_of_work=units, settings=settings)
        assert SandboxOutbox.configured(context) is None  # the sandbox steps aside for real SMTP

        def smtp() -> Mailer:
            mailer = SmtpMail.configured(context)
            assert mailer is not None
            return mailer

        async def delivered() -> list[tuple[str, str]]:
            return [(str(m["To"]), str(m["Subject"])) for m in server.messages()]

        yield Outbox(smtp, delivered, real=True)
    else:
        context = ConnectorContext(units_of_work=units)
        assert SmtpMail.configured(context) is None

        async def recorded() -> list[tuple[str, str]]:
            return [(e["to"], e["subject"]) for e in (await sandbox_state(units))["emails"]]

        yield Outbox(lambda: SandboxOutbox(context), recorded, real=False)
    await engine.dispose()


def email(to: str = "ana@example.com", subject: str = "Your refund") -> EmailSend:
    return EmailSend(to=to, subject=subject, body="Hello Ana,\n\nwe refunded $40.00 on order 1003.\n")


async def test_an_email_is_sent_to_its_recipient(outbox: Outbox) -> None:
    result = await outbox.new().execute(email(), "key-1")
    assert (result["to"], result["replayed"]) == ("ana@example.com", False)
    assert await outbox.sent() == [("ana@example.com", "Your refund")]


async def test_the_same_key_sends_one_email_and_returns_the_first_result(outbox: Outbox) -> None:
    mailer = outbox.new()
    first = await mailer.execute(email(), "key-1")
    again = [await mailer.execute(email(), "key-1") for _ in range(3)]
    assert again == [{**first, "replayed": True}] * 3
    await mailer.execute(email(subject="Another"), "key-2")
    assert await outbox.sent() == [("ana@example.com", "Your refund"), ("ana@example.com", "Another")]


async def test_lookup_finds_a_sent_key_and_nothing_for_an_unknown_one(outbox: Outbox) -> None:
    mailer = outbox.new()
    sent = await mailer.execute(email(), "key-1")
    assert await mailer.lookup(email(), "key-1") == {**sent, "replayed": True}
    assert await mailer.lookup(email(), "key-2") is None


async def test_after_a_crash_between_sending_and_recording_a_fresh_instance_finds_the_email(
    outbox: Outbox,
) -> None:
    sent = await outbox.new().execute(email(), "key-1")  # sent; the process died before the bot recorded it

    restarted = outbox.new()
    assert await restarted.lookup(email(), "key-1") == {**sent, "replayed": True}
    assert await restarted.execute(email(), "key-1") == {**sent, "replayed": True}
    assert await outbox.sent() == [("ana@example.com", "Your refund")]


async def test_a_recipient_the_mail_system_refuses_is_refused_for_good(
    outbox: Outbox, smtp_server: FakeSmtpServer
) -> None:
    if outbox.real:
        smtp_server.reply_next("RCPT", "550 5.1.1 <nobody@mail.invalid>: no such mailbox")
    mailer = outbox.new()
    with pytest.raises(PermanentConnectorError, match="no such mailbox"):
        await mailer.execute(email("nobody@mail.invalid"), "key-1")
    assert await mailer.lookup(email("nobody@mail.invalid"), "key-1") is None
    assert await outbox.sent() == []
