"""``webhook.post``: a signed JSON POST to one of the webhooks named in AIOS_WEBHOOKS.

    AIOS_WEBHOOKS = {"crm": {"url": "https://crm.example.com/hooks/aios", "secret": "…"}, …}

Each delivery carries

    X-AIOS-Request-Timestamp: <unix seconds>
    X-AIOS-Signature: v0=<hex HMAC-SHA256 of "v0:<timestamp>:<raw body>" keyed with the webhook's secret>
    Idempotency-Key: <the execution's key>

so a receiver can check that the bot sent it, refuse old timestamps (replays), and drop a repeat of a key it has
seen. 2xx is delivered; 429 (honouring Retry-After), 5xx, timeouts and connection failures are transient; other
answers are permanent and carry the receiver's message, cut short.

A receiver cannot be asked what it got, so delivered keys go into the ``sent_message`` ledger, read before
sending and by ``lookup``. The same window as SMTP's remains: a crash after the receiver answered 2xx and
before the ledger row is committed delivers again on the retry, with the same Idempotency-Key, which is what
the header is for. URLs (which often hold a token) and secrets never appear in results or errors: a webhook is
named by its name only, and a name that is not configured is refused before anyone is asked to approve it.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from connectors.actions import Action, WebhookPost, webhook_body_bytes
from connectors.base import ConnectorContext
from connectors.errors import ConnectorSettingError, PermanentConnectorError
from connectors.http_errors import raise_if_transient, reach
from connectors.sent_ledger import SentLedger

SETTING = "AIOS_WEBHOOKS"
EXAMPLE = '{"crm": {"url": "https://crm.example.com/hooks/aios", "secret": "a long random string"}}'
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
RECEIVER_MESSAGE_MAX = 200


@dataclass(frozen=True)
class Webhook:
    name: str
    url: str = field(repr=False)  # may hold a token in its path
    secret: str = field(repr=False)

    def signed_headers(self, raw_body: bytes, idempotency_key: str, timestamp: int) -> dict[str, str]:
        return {
            "Content-Type": "application/json",
            "X-AIOS-Request-Timestamp": str(timestamp),
            "X-AIOS-Signature": signature(self.secret, timestamp, raw_body),
            "Idempotency-Key": idempotency_key,
        }


def signature(secret: str, timestamp: int, raw_body: bytes) -> str:
    """``v0=`` and the hex HMAC-SHA256 of ``v0:<timestamp>:<raw body>``: what a receiver recomputes to check."""
    signed = b"v0:" + str(timestamp).encode() + b":" + raw_body
    return "v0=" + hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def parse_webhooks(value: str) -> dict[str, Webhook]:
    """AIOS_WEBHOOKS read, or a ConnectorSettingError saying what is wrong (never repeating a url or secret)."""
    try:
        document = json.loads(value)
    except json.JSONDecodeError as exc:
        raise ConnectorSettingError(
            f"{SETTING} is not valid JSON ({exc.msg} at character {exc.pos}); expected e.g. {EXAMPLE}"
        ) from None
    if not isinstance(document, dict) or not document:
        raise ConnectorSettingError(f"{SETTING} must be a JSON object of named webhooks, e.g. {EXAMPLE}")
    webhooks: dict[str, Webhook] = {}
    for name, entry in document.items():
        if not NAME.match(name):
            raise ConnectorSettingError(
                f"{SETTING}: a webhook's name must be letters, digits, '.', '_' or '-' (at most 64), "
                f"not {name[:64]!r}"
            )
        if not isinstance(entry, dict):
            raise ConnectorSettingError(f"{SETTING}: webhook {name!r} must be an object with url and secret")
        url, secret = entry.get("url"), entry.get("secret")
        unknown = sorted(set(entry) - {"url", "secret"})
        if unknown:
            raise ConnectorSettingError(
                f"{SETTING}: webhook {name!r} has an unknown key {unknown[0]!r}; it takes url and secret"
            )
        if not isinstance(url, str) or not _is_http_url(url):
            raise ConnectorSettingError(
                f"{SETTING}: webhook {name!r} needs a url starting with https:// or http://"
            )
        if not isinstance(secret, str) or not secret:
            raise ConnectorSettingError(
                f"{SETTING}: webhook {name!r} needs a secret (a non-empty string, shared with the receiver)"
            )
        webhooks[name] = Webhook(name, url, secret)
    return webhooks


def _is_http_url(url: str) -> bool:
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError on a malformed port)
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and bool(parts.hostname)


class Webhooks:
    actions: ClassVar[tuple[type[Action], ...]] = (WebhookPost,)
    settings_names: ClassVar[tuple[str, ...]] = (SETTING,)

    @classmethod
    def configured(cls, context: ConnectorContext) -> Webhooks | None:
        value = context.settings.get(SETTING)
        if not value:
            return None
        return cls(parse_webhooks(value), context)

    def __init__(self, webhooks: Mapping[str, Webhook], context: ConnectorContext) -> None:
        self._webhooks = dict(webhooks)
        self._ledger = SentLedger(context.units_of_work, "webhook")
        # Redirects are not followed: a signed body is meant for the configured url only.
        self._client = httpx.AsyncClient(timeout=context.http_timeout_seconds, follow_redirects=False)

    @property
    def names(self) -> tuple[str, ...]:
        """The configured webhooks' names, sorted: all an agent or a person is told about them."""
        return tuple(sorted(self._webhooks))

    async def close(self) -> None:
        await self._client.aclose()

    async def refusal(self, action: Action) -> str | None:
        """A name that is not configured: the action model only checks its spelling, so this says it before
        anyone is asked to approve a delivery that cannot happen."""
        assert isinstance(action, WebhookPost)
        return None if action.webhook in self._webhooks else self._unknown(action.webhook)

    async def lookup(self, action: Action, idempotency_key: str) -> dict[str, Any] | None:
        return await self._ledger.find(idempotency_key)

    async def execute(self, action: Action, idempotency_key: str) -> dict[str, Any]:
        assert isinstance(action, WebhookPost)
        earlier = await self._ledger.find(idempotency_key)
        if earlier is not None:
            return earlier
        webhook = self._webhook(action.webhook)
        raw = webhook_body_bytes(action.body)
        headers = webhook.signed_headers(raw, idempotency_key, int(time.time()))
        where = f"the webhook {webhook.name}"
        response = await reach(self._client.post(webhook.url, content=raw, headers=headers), where)
        raise_if_transient(
            response, f"{where} answered {response.status_code}: {_receiver_message(response)}"
        )
        if not response.is_success:
            raise PermanentConnectorError(
                f"{where} refused the delivery with {response.status_code}: {_receiver_message(response)}"
            )
        result = {"webhook": webhook.name, "status": response.status_code, "replayed": False}
        await self._ledger.record(idempotency_key, webhook.name, result)
        return result

    async def health(self) -> str:
        """A webhook cannot be called without delivering something, so this checks that each receiver's host
        accepts connections."""
        unreachable = [
            name
            for name, reached in zip(
                self._webhooks,
                await asyncio.gather(*(_reachable(w.url) for w in self._webhooks.values())),
                strict=True,
            )
            if not reached
        ]
        if unreachable:
            raise PermanentConnectorError(
                f"cannot connect to the host of webhook {', '.join(unreachable)}; check its url in {SETTING}"
            )
        return f"{len(self._webhooks)} webhook(s) reachable: {', '.join(self._webhooks)}"

    def _webhook(self, name: str) -> Webhook:
        try:
            return self._webhooks[name]
        except KeyError:
            raise PermanentConnectorError(self._unknown(name)) from None

    def _unknown(self, name: str) -> str:
        return f"no webhook named {name!r} is configured; the configured ones are {', '.join(self.names)} ({SETTING})"


async def _reachable(url: str) -> bool:
    parts = urlsplit(url)
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        async with asyncio.timeout(5):
            _, writer = await asyncio.open_connection(parts.hostname, port)
    except (OSError, TimeoutError):
        return False
    writer.close()
    await writer.wait_closed()
    return True


def _receiver_message(response: httpx.Response) -> str:
    text = " ".join(response.text.split()) or response.reason_phrase
    return text if len(text) <= RECEIVER_MESSAGE_MAX else text[: RECEIVER_MESSAGE_MAX - 1] + "…"
