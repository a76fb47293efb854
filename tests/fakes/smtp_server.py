"""A real SMTP server (aiosmtpd) on 127.0.0.1, in its own thread and event loop, that keeps what it receives.

It asks for AUTH (PLAIN or LOGIN, allowed without TLS on loopback) with one user and password, and can be told
to answer the next RCPT TO or DATA with a reply of the test's choosing (a 4xx or a 5xx).

Given a server-side ``tls_context`` it offers STARTTLS (and with ``require_starttls`` refuses everything else
until the client has upgraded), or with ``implicit_tls`` speaks TLS from the first byte, like port 465. Each
login records whether it came over TLS.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import logging
import ssl
import threading
import warnings
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Self

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

# aiosmtpd logs a warning for AUTH without TLS, and a deprecation notice of its own, on every connection.
logging.getLogger("mail.log").setLevel(logging.ERROR)

USER = "aios-mailer"
PASSWORD = "s3cret-smtp-pa55word"


@dataclass(frozen=True)
class Received:
    sender: str
    recipients: list[str]
    message: EmailMessage


class FakeSmtpServer:
    def __init__(
        self,
        user: str = USER,
        password: str = PASSWORD,
        *,
        tls_context: ssl.SSLContext | None = None,
        require_starttls: bool = False,
        implicit_tls: bool = False,
    ) -> None:
        assert tls_context is not None or not (require_starttls or implicit_tls), "TLS needs a tls_context"
        self.user, self.password = user, password
        self.tls_context, self.require_starttls, self.implicit_tls = (
            tls_context,
            require_starttls,
            implicit_tls,
        )
        self.received: list[Received] = []
        self.logins: list[str] = []
        self.logins_over_tls: list[bool] = []
        self._replies: dict[str, list[str]] = {"RCPT": [], "DATA": []}
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="fake-smtp", daemon=True)
        self._server: asyncio.Server | None = None
        self.port = 0

    @property
    def url(self) -> str:
        scheme = "smtps" if self.implicit_tls else "smtp"
        return f"{scheme}://{self.user}:{self.password}@127.0.0.1:{self.port}"

    def reply_next(self, command: str, reply: str) -> None:
        """Answer the next ``command`` ("RCPT" or "DATA") with ``reply``, e.g. "451 4.3.0 try later"."""
        with self._lock:
            self._replies[command].append(reply)

    def messages(self) -> list[EmailMessage]:
        with self._lock:
            return [r.message for r in self.received]

    def start(self) -> Self:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    def stop(self) -> None:
        if self._thread.is_alive():
            asyncio.run_coroutine_threadsafe(self._stop(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def _start(self) -> None:
        def protocol() -> SMTP:
            with warnings.catch_warnings():  # AUTH without TLS is what a loopback test wants
                warnings.simplefilter("ignore", UserWarning)
                return SMTP(
                    self,
                    hostname="fake-smtp.test",
                    auth_required=True,
                    auth_require_tls=False,
                    authenticator=self._authenticate,
                    tls_context=None if self.implicit_tls else self.tls_context,
                    require_starttls=self.require_starttls,
                )

        implicit = self.tls_context if self.implicit_tls else None
        self._server = await self._loop.create_server(protocol, "127.0.0.1", 0, ssl=implicit)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        # Sessions still open (a client that gave up mid-conversation) end with the server.
        sessions = [task for task in asyncio.all_tasks() if task is not asyncio.current_task()]
        for task in sessions:
            task.cancel()
        await asyncio.gather(*sessions, return_exceptions=True)

    def _authenticate(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
    ) -> AuthResult:
        ok = (
            isinstance(auth_data, LoginPassword)
            and auth_data.login.decode() == self.user
            and auth_data.password.decode() == self.password
        )
        if ok:
            assert server.transport is not None
            over_tls = server.transport.get_extra_info("sslcontext") is not None
            with self._lock:
                self.logins.append(self.user)
                self.logins_over_tls.append(over_tls)
        return AuthResult(success=ok, handled=False)  # not handled: aiosmtpd answers 535 itself

    def _scripted(self, command: str) -> str | None:
        with self._lock:
            return self._replies[command].pop(0) if self._replies[command] else None

    # aiosmtpd's handler hooks

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        scripted = self._scripted("RCPT")
        if scripted is not None:
            return scripted
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        scripted = self._scripted("DATA")
        if scripted is not None:
            return scripted
        content = envelope.original_content or b""
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self._lock:
            self.received.append(Received(str(envelope.mail_from), list(envelope.rcpt_tos), message))
        return "250 2.0.0 accepted"
