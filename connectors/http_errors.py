"""What every HTTP connector treats as transient: no answer, no connection, 429 and 5xx (with Retry-After).

Each connector still words its own refusals (which setting to check, the remote system's message); this module
only keeps the shared classification in one place.
"""

from __future__ import annotations

from collections.abc import Awaitable, Mapping
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import httpx

from connectors.errors import TransientConnectorError
from storage.unit_of_work import awaiting_remote


async def reach(request: Awaitable[httpx.Response], system: str, *, hint: str = "") -> httpx.Response:
    """The response to ``request``; a timeout or a failed connection becomes a transient error naming
    ``system`` and only the kind of failure, because the exception's own text can hold a URL with credentials.
    Every HTTP connector's calls come through here, so no read transaction of ours waits on them."""
    try:
        async with awaiting_remote():
            return await request
    except httpx.TimeoutException:
        raise TransientConnectorError(f"{system} did not answer in time") from None
    except httpx.TransportError as exc:
        raise TransientConnectorError(
            f"{system} could not be reached ({type(exc).__name__}){f'; {hint}' if hint else ''}"
        ) from None


def raise_if_transient(response: httpx.Response, message: str) -> None:
    """429 and 5xx are worth retrying, after the wait the server asked for if it named one."""
    if response.status_code == 429 or response.status_code >= 500:
        raise TransientConnectorError(message, retry_after(response.headers))


def retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Retry-After in seconds, given as seconds or as an HTTP date; None when absent or unreadable."""
    value = (headers or {}).get("Retry-After") or (headers or {}).get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())
