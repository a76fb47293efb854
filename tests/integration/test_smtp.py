"""email.send over real SMTP, against a real aiosmtpd server on loopback that asks for a login."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import stamina
from sqlmodel import col, delete, select

from bot.bootstrap import Aios
from bot.explain import explain
from connectors.actions import EmailSend
from connectors.base import ConnectorContext
from connectors.errors import ConnectorSettingError, PermanentConnectorError, TransientConnectorError
from connectors.smtp_mail import SmtpMail, SmtpServer
from runtime.messages import DecideApproval, ExecuteAction, ReconcileExecution
from storage.engine import create_engine
from storage.ids import format_id
from storage.records import Approval, Execution, ProposedAction, SentMessage
from storage.unit_of_work import UnitOfWorkFactory
from tests.conftest import Clock
from tests.fakes.aios_process import AIOS, aios_env
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.smtp_server import PASSWORD, USER, FakeSmtpServer
from tests.integration.conftest import CHANNEL, MANAGER, ask, everything_stored, start_aios

KEY = "4f" * 32  # an idempotency key as the bot makes them: 64 hex digits


@pytest.fixture
def smtp_server() -> Iterator[FakeSmtpServer]:
    with FakeSmtpServer() as server:
        yield server


def mailer(units: UnitOfWorkFactory, url: str, sender: str = "Shop <shop@example.com>") -> SmtpMail:
    settings = {"AIOS_SMTP_URL": url, "AIOS_MAIL_FROM": sender}
    connector = SmtpMail.configured(ConnectorContext(units_of_work=units, settings=settings))
    assert connector is not None
    return connector


def email(to: str = "ana@example.com") -> EmailSend:
    return EmailSend(to=to, subject="Your refund", body="Hello Ana,\n\nwe refunded $40.00 on order 1003.\n")


async def test_the_email_arrives_with_its_headers_after_a_login(
    units: UnitOfWorkFactory, smtp_server: FakeSmtpServer
) -> None:
    result = await mailer(units, smtp_server.url).execute(email(), KEY)

    [received] = smtp_server.received
    message = received.message
    assert (received.sender, received.recipients) == ("shop@example.com", ["ana@example.com"])
    assert (message["From"], message["To"], message["Subject"]) == (
        "Shop <shop@example.com>",
        "ana@example.com",
        "Your refund",
    )
    assert message["Message-ID"] == f"<{KEY}@example.com>" == result["message_id"]
    assert message["Date"] and "we refunded $40.00" in message.get_content()
    assert smtp_server.logins == [USER]
    assert result == {"message_id": f"<{KEY}@example.com>", "to": "ana@example.com", "replayed": False}


@pytest.mark.parametrize(
    ("command", "reply", "error"),
    [
        ("RCPT", "450 4.2.1 mailbox busy, try later", TransientConnectorError),
        ("DATA", "451 4.3.0 local problem, try later", TransientConnectorError),
        ("RCPT", "550 5.1.1 no such mailbox here", PermanentConnectorError),
        ("DATA", "554 5.7.1 message refused as spam", PermanentConnectorError),
    ],
    ids=["4xx-rcpt", "4xx-data", "5xx-rcpt", "5xx-data"],
)
async def test_4xx_replies_are_transient_and_5xx_permanent_with_the_servers_words(
    units: UnitOfWorkFactory,
    smtp_server: FakeSmtpServer,
    command: str,
    reply: str,
    error: type[Exception],
) -> None:
    connector = mailer(units, smtp_server.url)
    smtp_server.reply_next(command, reply)
    with pytest.raises(error) as raised:
        await connector.execute(email(), KEY)
    assert type(raised.value) is error
    assert reply.split(" ", 1)[1] in str(raised.value) and reply[:3] in str(raised.value)
    assert await connector.lookup(email(), KEY) is None  # nothing was sent, so nothing is recorded
    assert smtp_server.received == []

    await connector.execute(email(), KEY)  # the server takes it now: the retry sends it, once
    assert len(smtp_server.received) == 1


async def test_a_server_that_is_down_is_transient(
    units: UnitOfWorkFactory, smtp_server: FakeSmtpServer
) -> None:
    connector = mailer(units, smtp_server.url)
    smtp_server.stop()
    with pytest.raises(TransientConnectorError, match="could not be reached"):
        await connector.execute(email(), KEY)
    assert await connector.lookup(email(), KEY) is None


async def test_a_short_password_is_hidden_where_it_stands_alone_not_inside_words(
    units: UnitOfWorkFactory, smtp_server: FakeSmtpServer
) -> None:
    """Hiding the password "p" must not turn "port" into "***ort" in the message people read."""
    connector = mailer(units, smtp_server.url.replace(f"{USER}:{PASSWORD}@", "u:p@"))
    smtp_server.stop()
    with pytest.raises(TransientConnectorError) as raised:
        await connector.execute(email(), KEY)
    assert "port" in str(raised.value) and "***" not in str(raised.value), str(raised.value)


async def test_a_refused_login_is_permanent_and_never_shows_the_password(
    units: UnitOfWorkFactory, smtp_server: FakeSmtpServer
) -> None:
    wrong = "wr0ng-pa55word-123"
    connector = mailer(units, smtp_server.url.replace(PASSWORD, wrong))
    with pytest.raises(PermanentConnectorError, match=f"refused the login of '{USER}': 535") as raised:
        await connector.execute(email(), KEY)
    assert wrong not in str(raised.value)
    with pytest.raises(PermanentConnectorError, match="check AIOS_SMTP_URL") as unhealthy:
        await connector.health()
    assert wrong not in str(unhealthy.value)
    assert smtp_server.received == []


async def test_health_says_where_it_logged_in_without_the_password(
    units: UnitOfWorkFactory, smtp_server: FakeSmtpServer
) -> None:
    line = await mailer(units, smtp_server.url).health()
    assert line == (
        f"SMTP server 127.0.0.1:{smtp_server.port} answers (not encrypted, logged in as {USER}); "
        "mail from shop@example.com"
    )
    assert smtp_server.received == []


async def test_a_send_the_ledger_missed_is_sent_again_with_the_same_message_id(
    units: UnitOfWorkFactory, smtp_server: FakeSmtpServer
) -> None:
    """The documented window: the server accepted the message, and the process died before the ledger row was
    committed. Nothing can tell that it went out, so the retry sends it again — with the same Message-ID, which
    is how the receiving side can tell the two apart."""
    connector = mailer(units, smtp_server.url)
    await connector.execute(email(), KEY)
    async with units() as uow:
        await uow.session.exec(delete(SentMessage))
        await uow.commit()

    assert await connector.lookup(email(), KEY) is None
    await connector.execute(email(), KEY)
    assert [m["Message-ID"] for m in smtp_server.messages()] == [f"<{KEY}@example.com>"] * 2


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("smtp://mail.example.com", SmtpServer("mail.example.com", 587)),
        (
            "smtp://bot%40example.com:p%40ss%3Aw0rd@mail.example.com:2525?starttls=true",
            SmtpServer("mail.example.com", 2525, "bot@example.com", "p@ss:w0rd", start_tls=True),
        ),
        ("smtp://relay:25?starttls=false", SmtpServer("relay", 25, start_tls=False)),
        (
            "smtps://u:pw@mail.example.com",
            SmtpServer("mail.example.com", 465, "u", "pw", use_tls=True, start_tls=False),
        ),
    ],
)
def test_the_smtp_url_says_where_and_how_to_connect(url: str, expected: SmtpServer) -> None:
    assert SmtpServer.from_url(url) == expected


@pytest.mark.parametrize(
    ("settings", "says"),
    [
        (
            {"AIOS_SMTP_URL": "http://u:hunter2-secret@mail.example.com"},
            "AIOS_SMTP_URL must start with smtp://",
        ),
        (
            {"AIOS_SMTP_URL": "smtp://u:hunter2-secret@mail.example.com:port"},
            "AIOS_SMTP_URL is not a valid URL",
        ),
        ({"AIOS_SMTP_URL": "smtp://u:hunter2-secret@mail.example.com?tls=1"}, "unknown option 'tls'"),
        (
            {"AIOS_SMTP_URL": "smtp://u:hunter2-secret@h?starttls=maybe"},
            "starttls must be true, false or auto",
        ),
        ({"AIOS_SMTP_URL": "smtps://u:hunter2-secret@h?starttls=true"}, "smtps:// is TLS already"),
        ({"AIOS_SMTP_URL": "smtp://:hunter2-secret@h"}, "a password but no user"),
        ({"AIOS_SMTP_URL": "smtp://u:hunter2-secret@h"}, "AIOS_MAIL_FROM is not"),
        (
            {"AIOS_SMTP_URL": "smtp://u:hunter2-secret@h", "AIOS_MAIL_FROM": "the shop"},
            "AIOS_MAIL_FROM must be",
        ),
    ],
)
def test_a_malformed_setting_is_refused_naming_it_without_its_secret(
    settings: dict[str, str], says: str
) -> None:
    units = UnitOfWorkFactory.for_engine(create_engine("sqlite+aiosqlite://"))  # never used: nothing starts
    with pytest.raises(ConnectorSettingError, match=says) as raised:
        SmtpMail.configured(ConnectorContext(units_of_work=units, settings=settings))
    assert "hunter2-secret" not in str(raised.value)


def test_the_command_line_says_what_is_wrong_with_the_setting_in_one_line(tmp_path: Path) -> None:
    env = aios_env(f"sqlite+aiosqlite:///{tmp_path}/cli.db", "http://127.0.0.1:9/api/")
    env.update(
        {"AIOS_SMTP_URL": "smtp://bot:hunter2-secret@mail.example.com:port", "AIOS_MAIL_FROM": "a@b.co"}
    )
    result = subprocess.run(
        [AIOS, "serve", "--port", "0"], env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "error: AIOS_SMTP_URL is not a valid URL; expected smtp://user:password@mail.example.com:587 (or "
        "smtps://…:465; ?starttls=true|false)"
    )
    assert "hunter2-secret" not in result.stdout + result.stderr


@pytest.fixture
async def smtp_aios(
    database_url: str, slack_api: FakeSlackApi, smtp_server: FakeSmtpServer, clock: Clock, tmp_path: Path
) -> AsyncIterator[Aios]:
    instance = await start_aios(
        database_url,
        slack_api,
        clock,
        tmp_path,
        AIOS_SMTP_URL=smtp_server.url,
        AIOS_MAIL_FROM="Shop <shop@example.com>",
    )
    yield instance
    await instance.close()


async def customer_email(aios: Aios) -> ProposedAction:
    async with aios.units() as uow:
        query = select(ProposedAction).where(col(ProposedAction.name) == "email.send")
        return (await uow.session.exec(query)).one()


async def approve_the_email(aios: Aios) -> ProposedAction:
    """Ask for a refund with a customer email; the refund goes through, the manager approves the email."""
    await ask(aios, "refund order 1003 $40 and tell the customer")
    async with aios.units() as uow:
        approval = (await uow.session.exec(select(Approval))).one()
    assert approval.id is not None
    await aios.process(DecideApproval(approval.id, MANAGER, approve=True, channel=CHANNEL))
    return await customer_email(aios)


async def test_a_refund_with_a_customer_email_sends_one_message_after_the_manager_approves(
    smtp_aios: Aios, smtp_server: FakeSmtpServer, slack_api: FakeSlackApi
) -> None:
    sent = await approve_the_email(smtp_aios)

    [message] = smtp_server.messages()
    assert (message["To"], message["From"]) == ("ana@example.com", "Shop <shop@example.com>")
    assert sent.status == "executed" and sent.id is not None
    assert any(
        "Done: Email ana@example.com" in c.params["text"] for c in slack_api.calls_to("chat.postMessage")
    )

    # A second click's command and a recovery pass send nothing more.
    async with smtp_aios.units() as uow:
        execution = (
            await uow.session.exec(select(Execution).where(col(Execution.action_id) == sent.id))
        ).one()
    assert execution.id is not None
    assert message["Message-ID"] == f"<{execution.idempotency_key}@example.com>"
    await smtp_aios.process(ExecuteAction(sent.id))
    await smtp_aios.process(ReconcileExecution(execution.id))
    assert len(smtp_server.received) == 1


async def test_the_password_is_in_no_record_message_or_explanation(
    smtp_aios: Aios, smtp_server: FakeSmtpServer, slack_api: FakeSlackApi
) -> None:
    smtp_server.reply_next("DATA", f"554 5.7.1 refused (you said {PASSWORD})")  # even a server that echoes it
    with stamina.set_testing(True):
        sent = await approve_the_email(smtp_aios)
    assert sent.status == "failed" and sent.id is not None

    stored = await everything_stored(smtp_aios)
    assert "554 5.7.1 refused (you said ***)" in stored  # the server's words are kept, the password is not
    said = "\n".join(str(c.params) for c in slack_api.calls)
    explained = await explain(smtp_aios.units, format_id("A", sent.id))
    assert "554 5.7.1" in said
    for text in (stored, said, explained):
        assert PASSWORD not in text
