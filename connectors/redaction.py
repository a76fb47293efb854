"""One net for configured secrets: every text and result that leaves a connector, and every log line and chat
message, passes through a ``Redactor`` built from the secrets in the settings.

Connectors keep their own key out of what they say; this catches what one forgets, a library's exception text
or a server that echoes a credential back. A secret is replaced by ``[REDACTED:<SETTING>]``, and so are the forms
it takes on the wire: URL-encoded, without the spaces WordPress shows in application passwords, base64 as in
HTTP Basic and SMTP AUTH, and escaped for Slack's mrkdwn (as chat messages carry the text they quote).
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, quote_plus

if TYPE_CHECKING:  # the settings import this module, and must stay quick to import
    from connectors.sandbox_shop import OrderInfo

# Shorter values would shred ordinary text (a 4-digit PIN matches order numbers and years).
MIN_SECRET_LENGTH = 6

E = TypeVar("E", bound=BaseException)


@dataclass(frozen=True)
class Secret:
    """A configured secret: the setting it comes from, its value, and the user it logs in with, if any."""

    setting: str
    value: str = field(repr=False)
    user: str | None = None


def _base64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _mrkdwn_escaped(text: str) -> str:
    """The text as a chat message quotes it: Slack's mrkdwn writes `&`, `<` and `>` as entities (the escaping
    ``runtime.mrkdwn`` does, which connectors cannot import)."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _forms(secret: Secret) -> set[str]:
    """What the secret may look like in a text: as set, on the wire, or inside an echoed request."""
    if len(secret.value.strip()) < MIN_SECRET_LENGTH:
        return set()
    values = {secret.value, secret.value.replace(" ", "")}
    forms = set(values)
    for value in values:
        forms |= {
            quote(value, safe=""),
            quote_plus(value),
            _base64(value),
            _base64(f"{value}:"),
            _mrkdwn_escaped(value),
        }
        if secret.user:
            forms |= {_base64(f"{secret.user}:{value}"), _base64(f"\0{secret.user}\0{value}")}
    return {form for form in forms if len(form) >= MIN_SECRET_LENGTH}


class Redactor:
    def __init__(self, secrets: Iterable[Secret] = ()) -> None:
        self._names: dict[str, str] = {}
        for secret in secrets:
            for form in _forms(secret):
                self._names.setdefault(form, secret.setting)
        # Longest first, so a secret that contains another is replaced whole.
        alternatives = sorted(self._names, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, alternatives))) if alternatives else None

    def __bool__(self) -> bool:
        return self._pattern is not None

    def text(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda match: f"[REDACTED:{self._names[match.group()]}]", text)

    def data(self, value: Any) -> Any:
        """A JSON-like value (str, dict, list, tuple, nested) with every secret replaced; a number whose
        digits hold a secret becomes its scrubbed text (it would be shown as those digits); other values as
        they are."""
        if self._pattern is None:
            return value
        if isinstance(value, str):
            return self.text(value)
        if isinstance(value, int | float) and not isinstance(value, bool) and self.leaks(str(value)):
            return self.text(str(value))
        if isinstance(value, dict):
            return {self.data(key): self.data(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return type(value)(self.data(item) for item in value)
        return value

    def error(self, exc: E) -> E:
        """The exception itself, its message scrubbed in place, so that its class (transient or permanent) and
        its fields (a retry-after) stay as they were."""
        if self._pattern is not None:
            exc.args = tuple(self.data(arg) for arg in exc.args)
        return exc

    def leaks(self, text: str) -> bool:
        return self._pattern is not None and self._pattern.search(text) is not None


class RedactedError(Exception):
    """An exception whose text held a secret that could not be removed in place; the message names its
    original class, and the original is not chained to it."""


def scrubbed(exc: Exception, redactor: Redactor) -> Exception:
    """``exc`` with no secret in its text: scrubbed in place when its text comes from its arguments (nearly
    every exception), otherwise replaced by a RedactedError."""
    redactor.error(exc)
    text = str(exc)
    if not redactor.leaks(text):
        return exc
    return RedactedError(f"{type(exc).__name__}: {redactor.text(text)}")


@contextmanager
def scrubbing(redactor: Redactor) -> Iterator[None]:
    """An exception leaves without a secret in its text, keeping its class (transient, permanent, a bug) and
    its traceback; one whose text cannot be scrubbed in place leaves as a RedactedError. Every read of a
    connector whose errors reach a person or a model (past the registry) goes through this."""
    try:
        yield
    except Exception as exc:
        clean = scrubbed(exc, redactor)
        if clean is exc:
            raise
        raise clean from None


class RedactedOrders:
    """A connector's order lookup whose errors are scrubbed: what it says goes into an agent's context."""

    def __init__(self, orders: Any, redactor: Redactor) -> None:
        self._orders = orders
        self._redactor = redactor

    async def get_order(self, order_id: int) -> OrderInfo | None:
        with scrubbing(self._redactor):
            order: OrderInfo | None = await self._orders.get_order(order_id)
        return order
