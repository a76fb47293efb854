"""``email.send`` over a real SMTP server, used instead of the sandbox outbox when AIOS_SMTP_URL is set.

    AIOS_SMTP_URL   smtp://user:password@host:587             STARTTLS when the server offers it
                    smtp://user:password@host:587?starttls=true   STARTTLS or refuse to send
                    smtp://host:25?starttls=false             plain (a relay on the same machine)
                    smtps://user:password@host:465            TLS from the first byte
    AIOS_MAIL_FROM  shop@example.com, or "Shop <shop@example.com>"

SMTP has no idempotency key, so exactly once is made of two parts. The Message-ID is derived from the key
(``<key@sender's domain>``): a repeat carries the same id, which mail systems use to recognise a duplicate. And
a ledger of sent keys (``sent_message``) is written as soon as the server has accepted the message; ``execute``
reads it before sending and ``lookup`` answers from it after a crash. One window remains: a process that dies
after the server accepted DATA and before the ledger row is committed (a few milliseconds) has sent a message
the ledger does not know, and the retry sends it again with the same Message-ID. Writing the row before
sending would close that window by opening a worse one — a crash before the send would record as sent a
message that never left.

4xx replies, timeouts and a server that cannot be reached are transient; 5xx replies are permanent and carry
the server's own message. The password never appears in a result, an error or a log line.

TLS (STARTTLS or smtps://) checks the server's certificate and host name against the machine's trusted CAs; a
server whose certificate comes from a private CA is trusted through the standard SSL_CERT_FILE (a bundle that
holds that CA). A certificate that is not trusted, a TLS handshake that fails, and a server that wants STARTTLS
when ``?starttls=false`` forbids it are permanent: retrying cannot fix a setting.
"""

from __future__ import annotations

import re
import ssl
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import formatdate, parseaddr
from typing import Any, ClassVar
from urllib.parse import parse_qs, unquote, urlsplit

import aiosmtplib

from connectors.actions import Action, EmailSend
from connectors.base import ConnectorContext
from connectors.errors import ConnectorSettingError, PermanentConnectorError, TransientConnectorError
from connectors.sent_ledger import SentLedger

URL_SETTING = "AIOS_SMTP_URL"
FROM_SETTING = "AIOS_MAIL_FROM"
URL_EXAMPLE = "smtp://user:password@mail.example.com:587 (or smtps://…:465; ?starttls=true|false)"
CA_SETTING = "SSL_CERT_FILE"
DEFAULT_PORTS = {"smtp": 587, "smtps": 465}
STARTTLS_CHOICES = {"true": True, "false": False, "auto": None}


@dataclass(frozen=True)
class SmtpServer:
    """Where and how to connect, read from AIOS_SMTP_URL."""

    hostname: str
    port: int
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    use_tls: bool = False  # smtps: TLS from the first byte
    start_tls: bool | None = None  # None: upgrade when the server offers STARTTLS

    @classmethod
    def from_url(cls, url: str) -> SmtpServer:
        # The URL holds the password, so no message here repeats it.
        try:
            parts = urlsplit(url.strip())
            port = parts.port
        except ValueError:
            raise ConnectorSettingError(f"{URL_SETTING} is not a valid URL; expected {URL_EXAMPLE}") from None
        if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
            raise ConnectorSettingError(
                f"{URL_SETTING} must start with smtp:// or smtps:// and name a host; expected {URL_EXAMPLE}"
            )
        if parts.password is not None and not parts.username:
            raise ConnectorSettingError(f"{URL_SETTING} has a password but no user; expected {URL_EXAMPLE}")
        options = parse_qs(parts.query)
        unknown = sorted(set(options) - {"starttls"})
        if unknown:
            raise ConnectorSettingError(
                f"{URL_SETTING} has an unknown option {unknown[0]!r}; the only one is ?starttls=true|false"
            )
        starttls = options.get("starttls", ["auto"])[-1].lower()
        if starttls not in STARTTLS_CHOICES:
            raise ConnectorSettingError(f"{URL_SETTING}: starttls must be true, false or auto")
        use_tls = parts.scheme == "smtps"
        if use_tls and STARTTLS_CHOICES[starttls]:
            raise ConnectorSettingError(
                f"{URL_SETTING}: smtps:// is TLS already; drop ?starttls=true, or use smtp:// with it"
            )
        return cls(
            hostname=parts.hostname,
            port=port or DEFAULT_PORTS[parts.scheme],
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password is not None else None,
            use_tls=use_tls,
            start_tls=False if use_tls else STARTTLS_CHOICES[starttls],
        )

    @property
    def address(self) -> str:
        return f"{self.hostname}:{self.port}"


class SmtpMail:
    actions: ClassVar[tuple[type[Action], ...]] = (EmailSend,)
    settings_names: ClassVar[tuple[str, ...]] = (URL_SETTING, FROM_SETTING)

    @classmethod
    def configured(cls, context: ConnectorContext) -> SmtpMail | None:
        url = context.settings.get(URL_SETTING)
        if not url:
            return None
        server = SmtpServer.from_url(url)
        return cls(server, _sender(context.settings.get(FROM_SETTING)), context)

    def __init__(self, server: SmtpServer, sender: Address, context: ConnectorContext) -> None:
        self._server = server
        self._sender = sender
        self._timeout = context.http_timeout_seconds
        self._ledger = SentLedger(context.units_of_work, "smtp")

    async def lookup(self, action: Action, idempotency_key: str) -> dict[str, Any] | None:
        return await self._ledger.find(idempotency_key)

    async def execute(self, action: Action, idempotency_key: str) -> dict[str, Any]:
        assert isinstance(action, EmailSend)
        # Look before sending: a retry of a message the server accepted (and the ledger recorded) sends nothing.
        earlier = await self._ledger.find(idempotency_key)
        if earlier is not None:
            return earlier
        message = self._message(action, idempotency_key)
        try:
            await aiosmtplib.send(message, **self._connection())
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise _classified(exc, self._server) from None
        result = {"message_id": message["Message-ID"], "to": action.to, "replayed": False}
        await self._ledger.record(idempotency_key, action.to, result)
        return result

    async def health(self) -> str:
        client = aiosmtplib.SMTP(**self._connection())
        try:
            async with client:
                await client.noop()
                encrypted = client.get_transport_info("sslcontext") is not None
        except (aiosmtplib.SMTPException, OSError) as exc:
            raise PermanentConnectorError(f"{_classified(exc, self._server)}; check {URL_SETTING}") from None
        login = f"logged in as {self._server.username}" if self._server.username else "no login"
        return (
            f"SMTP server {self._server.address} answers ({'TLS' if encrypted else 'not encrypted'}, {login}); "
            f"mail from {self._sender.addr_spec}"
        )

    def _message(self, action: EmailSend, idempotency_key: str) -> EmailMessage:
        message = EmailMessage()
        message["From"] = self._sender
        message["To"] = action.to
        message["Subject"] = action.subject
        message["Date"] = formatdate(usegmt=True)
        # Stable across retries, so a repeat after the window described above is recognisable as one.
        message["Message-ID"] = f"<{idempotency_key}@{self._sender.domain}>"
        message.set_content(action.body)
        return message

    def _connection(self) -> dict[str, Any]:
        server = self._server
        return {
            "hostname": server.hostname,
            "port": server.port,
            "username": server.username,
            "password": server.password,
            "use_tls": server.use_tls,
            "start_tls": server.start_tls,
            "timeout": self._timeout,
        }


def _classified(exc: Exception, server: SmtpServer) -> TransientConnectorError | PermanentConnectorError:
    """aiosmtplib's exception as a transient or permanent connector error, without the password in it."""
    where = f"the SMTP server at {server.address}"
    tls_problem = _tls_problem(exc, server)
    if tls_problem is not None:
        return PermanentConnectorError(f"{where} {tls_problem}")
    if isinstance(exc, aiosmtplib.SMTPResponseException) and _wants_starttls(exc) and not server.start_tls:
        hint = "remove ?starttls=false from" if server.start_tls is False else "use STARTTLS or smtps:// in"
        return PermanentConnectorError(
            _scrub(
                f"{where} takes mail only over TLS ({exc.code} {exc.message}); {hint} {URL_SETTING}", server
            )
        )
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused) and exc.recipients:
        refused = exc.recipients[0]
        return _by_code(
            refused.code, f"{where} refused the recipient: {refused.code} {refused.message}", server
        )
    if isinstance(exc, aiosmtplib.SMTPAuthenticationError):
        return PermanentConnectorError(
            _scrub(f"{where} refused the login of {server.username!r}: {exc.code} {exc.message}", server)
        )
    if isinstance(exc, aiosmtplib.SMTPResponseException):
        return _by_code(exc.code, f"{where} answered {exc.code} {exc.message}", server)
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return PermanentConnectorError(_scrub(f"{where} does not support it: {exc}", server))
    if isinstance(exc, TimeoutError):
        return TransientConnectorError(f"{where} did not answer in time")
    return TransientConnectorError(
        _scrub(f"{where} could not be reached: {exc or type(exc).__name__}", server)
    )


def _tls_problem(exc: Exception, server: SmtpServer) -> str | None:
    """What went wrong with TLS, and which setting fixes it; None when TLS is not the problem. aiosmtplib
    raises the ssl error itself on STARTTLS, and wraps it in SMTPConnectError on smtps://."""
    error = exc if isinstance(exc, ssl.SSLError) else exc.__cause__
    if isinstance(error, ssl.SSLCertVerificationError):
        why = error.verify_message.rstrip(".")
        return (
            f"presented a certificate this machine does not trust ({why}); if it is signed by a private CA, "
            f"point {CA_SETTING} at a CA bundle that includes it, otherwise check the host name in {URL_SETTING}"
        )
    if isinstance(error, ssl.SSLError):
        scheme = "smtps://" if server.use_tls else "smtp:// with STARTTLS"
        return (
            f"could not set up TLS ({error.reason or error}) using {scheme}; smtps:// is for servers that "
            f"speak TLS from the first byte (usually port 465), smtp:// for STARTTLS (usually 587): check "
            f"{URL_SETTING}"
        )
    return None


def _wants_starttls(exc: aiosmtplib.SMTPResponseException) -> bool:
    # 530 5.7.0 "Must issue a STARTTLS command first" (RFC 3207), whichever command it answered.
    return exc.code == 530 and "starttls" in exc.message.lower()


def _by_code(
    code: int, message: str, server: SmtpServer
) -> TransientConnectorError | PermanentConnectorError:
    # 4xx is SMTP's own "try again later"; 5xx means the server will not take the message.
    if 400 <= code < 500:
        return TransientConnectorError(_scrub(message, server))
    return PermanentConnectorError(_scrub(message, server))


def _scrub(message: str, server: SmtpServer) -> str:
    # Server replies do not normally echo credentials; this makes sure none ever reaches a record. Only where
    # the password stands on its own: a short one ("p") must not turn "port" into "***ort".
    if not server.password:
        return message
    alone = rf"(?<![A-Za-z0-9]){re.escape(server.password)}(?![A-Za-z0-9])"
    return re.sub(alone, "***", message)


def _sender(value: str | None) -> Address:
    if not value:
        raise ConnectorSettingError(
            f"{URL_SETTING} is set but {FROM_SETTING} is not: set it to the address emails come from, "
            "e.g. shop@example.com or 'Shop <shop@example.com>'"
        )
    name, addr = parseaddr(value)
    local, at, domain = addr.rpartition("@")
    if not at or not local or "." not in domain:
        raise ConnectorSettingError(
            f"{FROM_SETTING} must be an email address, e.g. shop@example.com or 'Shop <shop@example.com>'"
        )
    return Address(display_name=name, username=local, domain=domain)
