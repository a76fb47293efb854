"""email.send over TLS: STARTTLS and smtps:// against real aiosmtpd servers with a certificate from a private CA
(minted by trustme), trusted through SSL_CERT_FILE; and what a user is told when TLS cannot work."""

from __future__ import annotations

import ssl
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme

from connectors.actions import EmailSend
from connectors.base import ConnectorContext
from connectors.errors import PermanentConnectorError
from connectors.smtp_mail import SmtpMail
from storage.unit_of_work import UnitOfWorkFactory
from tests.fakes.smtp_server import PASSWORD, USER, FakeSmtpServer

KEY = "7a" * 32


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(ca: trustme.CA, *hosts: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*hosts).configure_cert(context)
    return context


@pytest.fixture
def trusted(ca: trustme.CA, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """This machine trusts the private CA, the standard way."""
    bundle = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(bundle))
    monkeypatch.setenv("SSL_CERT_FILE", str(bundle))


@pytest.fixture
def untrusted(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)


@pytest.fixture
def starttls_server(ca: trustme.CA) -> Iterator[FakeSmtpServer]:
    """Offers STARTTLS, and would take a login without it: only the client can keep the password off the wire."""
    with FakeSmtpServer(tls_context=server_context(ca, "127.0.0.1", "localhost")) as server:
        yield server


@pytest.fixture
def implicit_tls_server(ca: trustme.CA) -> Iterator[FakeSmtpServer]:
    context = server_context(ca, "127.0.0.1", "localhost")
    with FakeSmtpServer(tls_context=context, implicit_tls=True) as server:
        yield server


def mailer(units: UnitOfWorkFactory, url: str) -> SmtpMail:
    settings = {"AIOS_SMTP_URL": url, "AIOS_MAIL_FROM": "Shop <shop@example.com>"}
    connector = SmtpMail.configured(ConnectorContext(units_of_work=units, settings=settings))
    assert connector is not None
    return connector


def email() -> EmailSend:
    return EmailSend(to="ana@example.com", subject="Your refund", body="We refunded $40.00 on order 1003.\n")


@pytest.mark.usefixtures("trusted")
async def test_starttls_upgrades_before_the_login_and_the_mail_arrives(
    units: UnitOfWorkFactory, starttls_server: FakeSmtpServer
) -> None:
    connector = mailer(units, starttls_server.url)  # ?starttls=auto: upgrade when offered
    await connector.execute(email(), KEY)

    [received] = starttls_server.received
    assert received.recipients == ["ana@example.com"]
    assert starttls_server.logins_over_tls == [True]  # the password never crossed the wire in clear
    line = await connector.health()
    assert line.startswith(f"SMTP server 127.0.0.1:{starttls_server.port} answers (TLS, logged in as {USER})")
    assert starttls_server.logins_over_tls == [True, True]


@pytest.mark.usefixtures("trusted")
async def test_smtps_speaks_tls_from_the_first_byte_and_the_mail_arrives(
    units: UnitOfWorkFactory, implicit_tls_server: FakeSmtpServer
) -> None:
    assert implicit_tls_server.url.startswith("smtps://")
    connector = mailer(units, implicit_tls_server.url)
    await connector.execute(email(), KEY)

    assert [m["Subject"] for m in implicit_tls_server.messages()] == ["Your refund"]
    assert implicit_tls_server.logins_over_tls == [True]
    assert "(TLS, logged in as" in await connector.health()


@pytest.mark.usefixtures("untrusted")
@pytest.mark.parametrize("kind", ["starttls", "smtps"])
async def test_an_untrusted_certificate_is_permanent_and_says_what_to_set(
    units: UnitOfWorkFactory,
    starttls_server: FakeSmtpServer,
    implicit_tls_server: FakeSmtpServer,
    kind: str,
) -> None:
    server = starttls_server if kind == "starttls" else implicit_tls_server
    connector = mailer(units, server.url)
    with pytest.raises(PermanentConnectorError) as raised:
        await connector.execute(email(), KEY)
    said = str(raised.value)
    assert said.startswith(f"the SMTP server at 127.0.0.1:{server.port} presented a certificate this machine")
    assert "unable to get local issuer certificate" in said and "point SSL_CERT_FILE at a CA bundle" in said
    assert PASSWORD not in said
    assert server.received == [] and server.logins == []  # no login over a connection that was not trusted
    with pytest.raises(PermanentConnectorError, match="does not trust"):
        await connector.health()


@pytest.mark.usefixtures("trusted")
async def test_a_certificate_for_another_host_is_refused(units: UnitOfWorkFactory, ca: trustme.CA) -> None:
    with FakeSmtpServer(tls_context=server_context(ca, "mail.example.com")) as server:
        with pytest.raises(PermanentConnectorError) as raised:
            await mailer(units, server.url).execute(email(), KEY)
        said = str(raised.value)
        assert "does not trust (IP address mismatch, certificate is not valid for '127.0.0.1');" in said
        assert said.endswith("otherwise check the host name in AIOS_SMTP_URL") and server.logins == []


@pytest.mark.usefixtures("trusted")
async def test_a_server_that_requires_starttls_when_the_url_forbids_it_is_told_plainly(
    units: UnitOfWorkFactory, ca: trustme.CA
) -> None:
    context = server_context(ca, "127.0.0.1")
    with FakeSmtpServer(tls_context=context, require_starttls=True) as server:
        connector = mailer(units, f"{server.url}?starttls=false")
        with pytest.raises(PermanentConnectorError) as raised:
            await connector.execute(email(), KEY)
        assert str(raised.value) == (
            f"the SMTP server at 127.0.0.1:{server.port} takes mail only over TLS "
            "(530 Must issue a STARTTLS command first); remove ?starttls=false from AIOS_SMTP_URL"
        )
        assert server.received == [] and server.logins == []

        await mailer(units, server.url).execute(email(), KEY)  # auto: it upgrades, and the mail goes
        assert server.logins_over_tls == [True] and len(server.received) == 1


@pytest.mark.usefixtures("trusted")
async def test_smtps_to_a_server_that_does_not_speak_tls_on_connect_names_the_scheme(
    units: UnitOfWorkFactory, starttls_server: FakeSmtpServer
) -> None:
    url = starttls_server.url.replace("smtp://", "smtps://")
    with pytest.raises(PermanentConnectorError) as raised:
        await mailer(units, url).execute(email(), KEY)
    assert "could not set up TLS (WRONG_VERSION_NUMBER) using smtps://" in str(raised.value)
    assert "smtp:// for STARTTLS (usually 587): check AIOS_SMTP_URL" in str(raised.value)
    assert starttls_server.logins == []
