"""``social.post`` on a Mastodon server, used instead of the sandbox when MASTODON_URL and MASTODON_ACCESS_TOKEN
are set (an access token with the ``write:statuses`` scope; ``read:accounts`` for the health check).

A post is ``POST /api/v1/statuses`` with our idempotency key as Mastodon's ``Idempotency-Key``: Mastodon answers
a repeat of the key with the status the first request created, for an hour. Past that hour only our own record
knows, so a ledger of posted keys (``sent_message``) is written as soon as Mastodon answers, and ``execute``
reads it before posting again (``lookup`` answers from it after a crash). Together they leave no window: a
crash between Mastodon's answer and the ledger row is retried within the hour, under the same key.

A later ``publish_at`` becomes Mastodon's ``scheduled_at``, which Mastodon accepts only 5 minutes or more ahead:
a time nearer than that (or already past, as when an approval came late) is posted at once, and the result says
so. 429 (waiting until ``X-RateLimit-Reset``, or ``Retry-After``), 5xx, timeouts and refused connections are
retried; 401/403 and 422 fail at once with Mastodon's own ``error``. The token never appears in a result, an
error or a log line.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from connectors.actions import Action, SocialPost
from connectors.base import ConnectorContext
from connectors.errors import ConnectorSettingError, PermanentConnectorError, TransientConnectorError
from connectors.http_errors import reach, retry_after
from connectors.sent_ledger import SentLedger
from storage.records import utcnow

URL_SETTING = "MASTODON_URL"
TOKEN_SETTING = "MASTODON_ACCESS_TOKEN"
MASTODON_SETTINGS = (URL_SETTING, TOKEN_SETTING)
# Mastodon refuses a scheduled_at less than this far ahead (422 "Scheduled at must be at least 5 minutes…").
MIN_SCHEDULE_AHEAD = timedelta(minutes=5)
# A little more than Mastodon's minimum, so that a request that takes a moment is still far enough ahead.
SCHEDULE_MARGIN = timedelta(seconds=30)


class MastodonSocial:
    actions: ClassVar[tuple[type[Action], ...]] = (SocialPost,)
    settings_names: ClassVar[tuple[str, ...]] = MASTODON_SETTINGS

    @classmethod
    def configured(cls, context: ConnectorContext) -> MastodonSocial | None:
        settings = context.settings
        if not any(settings.get(name) for name in MASTODON_SETTINGS):
            return None
        missing = [name for name in MASTODON_SETTINGS if not settings.get(name)]
        if missing:
            raise ConnectorSettingError(
                f"Mastodon needs {', '.join(MASTODON_SETTINGS)} together; {', '.join(missing)} is not set"
            )
        client = httpx.AsyncClient(
            base_url=_server_url(settings[URL_SETTING]),
            headers={"Authorization": f"Bearer {settings[TOKEN_SETTING]}", "Accept": "application/json"},
            timeout=context.http_timeout_seconds,
            follow_redirects=False,
        )
        return cls(client, SentLedger(context.units_of_work, "mastodon"))

    def __init__(self, client: httpx.AsyncClient, ledger: SentLedger) -> None:
        self._client = client
        self._ledger = ledger
        self._host = client.base_url.host

    async def close(self) -> None:
        await self._client.aclose()

    async def refusal(self, action: Action) -> str | None:
        if isinstance(action, SocialPost) and action.network != "mastodon":
            return (
                f"this bot posts to Mastodon ({self._host}) only, so a {action.network} post cannot be made; "
                "propose it for mastodon"
            )
        return None

    async def lookup(self, action: Action, idempotency_key: str) -> dict[str, Any] | None:
        return await self._ledger.find(idempotency_key)

    async def execute(self, action: Action, idempotency_key: str) -> dict[str, Any]:
        assert isinstance(action, SocialPost)
        refused = await self.refusal(action)
        if refused is not None:
            raise PermanentConnectorError(refused)
        # Look before posting: a retry after Mastodon's hour of idempotency posts nothing twice.
        earlier = await self._ledger.find(idempotency_key)
        if earlier is not None:
            return earlier
        body: dict[str, Any] = {"status": action.text}
        note = None
        now = utcnow()
        if action.publish_at is not None and action.publish_at >= now + MIN_SCHEDULE_AHEAD + SCHEDULE_MARGIN:
            body["scheduled_at"] = action.publish_at.isoformat()
        elif action.publish_at is not None and action.publish_at > now:
            note = "posted at once: Mastodon schedules posts only 5 minutes or more ahead"
        elif action.publish_at is not None:
            note = f"posted at once: its time ({action.publish_at.isoformat()}) had passed"
        response = await self._post(body, idempotency_key)
        result = _result(response, note)
        await self._ledger.record(idempotency_key, f"mastodon:{self._host}", result)
        return result

    async def health(self) -> str:
        response = await reach(
            self._client.get("/api/v1/accounts/verify_credentials"), f"Mastodon at {self._host}"
        )
        account = _checked(response, now=utcnow())
        return f"Mastodon at {self._host}: authenticated as @{account.get('acct') or account.get('username')}"

    async def _post(self, body: dict[str, Any], idempotency_key: str) -> dict[str, Any]:
        response = await reach(
            self._client.post("/api/v1/statuses", json=body, headers={"Idempotency-Key": idempotency_key}),
            f"Mastodon at {self._host}",
        )
        return _checked(response, now=utcnow())


def _checked(response: httpx.Response, *, now: datetime) -> dict[str, Any]:
    """The JSON object of a 2xx answer; otherwise the error Mastodon documents (``{"error": "…"}``), classified."""
    status = response.status_code
    if status == 429 or status >= 500:
        raise TransientConnectorError(
            f"Mastodon answered {status}{_said(response)}", _wait(response.headers, now)
        )
    if status in (401, 403):
        raise PermanentConnectorError(
            f"Mastodon refused the access token ({status}{_said(response)}); check {TOKEN_SETTING} and that it "
            "has the write:statuses scope"
        )
    if not 200 <= status < 300:
        raise PermanentConnectorError(f"Mastodon refused the post ({status}{_said(response)})")
    try:
        found = response.json()
    except ValueError:
        found = None
    if not isinstance(found, dict):
        raise PermanentConnectorError(f"Mastodon answered {status} with something other than a JSON object")
    return found


def _result(answer: Mapping[str, Any], note: str | None) -> dict[str, Any]:
    """A Status (posted) or a ScheduledStatus (it has ``scheduled_at`` and ``params``), as our result."""
    if "scheduled_at" in answer and "params" in answer:
        result = {
            "scheduled_status_id": str(answer.get("id")),
            "status": "scheduled",
            "publish_at": answer.get("scheduled_at"),
        }
    else:
        result = {
            "status_id": str(answer.get("id")),
            "status": "posted",
            "url": answer.get("url") or answer.get("uri"),
            "publish_at": answer.get("created_at"),
        }
    if note is not None:
        result["note"] = note
    return {**result, "replayed": False}


def _said(response: httpx.Response) -> str:
    """Mastodon's own words (``error``, and ``error_description`` when given), cut short."""
    try:
        answer = response.json()
    except ValueError:
        return ""
    if not isinstance(answer, dict) or not isinstance(answer.get("error"), str):
        return ""
    words = answer["error"]
    if isinstance(answer.get("error_description"), str):
        words += f": {answer['error_description']}"
    return f": {words[:200]}"


def _wait(headers: Mapping[str, str], now: datetime) -> float | None:
    """Seconds until Mastodon's rate limit resets (``X-RateLimit-Reset``, an ISO time), or ``Retry-After``."""
    reset = headers.get("X-RateLimit-Reset")
    if reset:
        try:
            when = datetime.fromisoformat(reset.replace("Z", "+00:00"))
        except ValueError:
            when = None
        if when is not None and when.tzinfo is not None:
            return max(0.0, (when - now).total_seconds())
    return retry_after(headers)


def _server_url(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.query or parts.fragment:
        raise ConnectorSettingError(
            f"{URL_SETTING} must be the server's address, e.g. https://mastodon.social (no path needed)"
        )
    return f"{parts.scheme}://{parts.netloc}{parts.path.rstrip('/')}"
