"""``social.post`` on a Mastodon server, used instead of the sandbox when MASTODON_URL and MASTODON_ACCESS_TOKEN
are set (an access token with the ``write:statuses`` scope; ``read:accounts`` for the health check).

A post is ``POST /api/v1/statuses`` with our idempotency key as Mastodon's ``Idempotency-Key``: Mastodon answers
a repeat of the key with the status the first request created, for an hour. Past that hour only our own record
knows, so the key goes into a ledger (``sent_message``) as in flight before the request, and the answer replaces
it as soon as Mastodon gives one; ``execute`` reads it before posting again (``lookup`` answers from it after a
crash). A key in flight with no answer (a crash between the two) is posted again under the same key within the
hour, when Mastodon still knows it; later, the account's newest statuses and scheduled statuses are searched for
our text, and when it is not among them the outcome is reported as unknown rather than risking a second post.

A later ``publish_at`` becomes Mastodon's ``scheduled_at``, which Mastodon accepts only 5 minutes or more ahead:
a time nearer than that (or already past, as when an approval came late) is posted at once, and the result says
so. 429 (waiting until ``X-RateLimit-Reset``, or ``Retry-After``), 5xx, timeouts and refused connections are
retried; 401/403 and 422 fail at once with Mastodon's own ``error``. The token never appears in a result, an
error or a log line.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar
from urllib.parse import urlsplit

import httpx

from connectors.actions import Action, SocialPost
from connectors.base import ConnectorContext
from connectors.errors import (
    ConnectorSettingError,
    OutcomeUnknownError,
    PermanentConnectorError,
    TransientConnectorError,
)
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
# How long after sending a key is posted again under it: well within the hour Mastodon keeps it.
KEY_REMEMBERED = timedelta(minutes=50)
# How many of the account's newest statuses (and scheduled ones) are searched for a post whose answer was lost.
SEARCHED = 40
_LINE_BREAK = re.compile(r"<br\s*/?>", re.IGNORECASE)
_PARAGRAPH = re.compile(r"</p>\s*<p[^>]*>", re.IGNORECASE)
_TAG = re.compile(r"<[^>]*>")


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
        target = f"mastodon:{self._host}"
        since = await self._ledger.in_flight_since(idempotency_key)
        if since is not None and utcnow() - since >= KEY_REMEMBERED:
            return await self._found_after_a_lost_answer(action, idempotency_key, target, since)
        if since is None:
            await self._ledger.begin(idempotency_key, target)
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
        await self._ledger.record(idempotency_key, target, result)
        return result

    async def _found_after_a_lost_answer(
        self, action: SocialPost, idempotency_key: str, target: str, since: datetime
    ) -> dict[str, Any]:
        """A key sent long enough ago for Mastodon to have forgotten it, whose answer never reached the ledger:
        the post is looked for among the account's newest statuses and scheduled statuses by its text."""
        try:
            found = await self._posted_with_text(action.text)
        except PermanentConnectorError as exc:
            # Not "nothing was changed": the post may be there, only the search could not tell.
            raise OutcomeUnknownError(f"{exc}, looking for a post whose answer was lost") from exc
        if found is None:
            raise OutcomeUnknownError(
                f"a post with this text may have been sent to Mastodon at {since:%Y-%m-%d %H:%M} UTC, but its "
                f"answer was lost and it is not among @{self._host}'s newest statuses; check the account before "
                "asking again"
            )
        result = _result(found, "found on Mastodon after its answer was lost")
        await self._ledger.record(idempotency_key, target, result)
        return {**result, "replayed": True}

    async def _posted_with_text(self, text: str) -> dict[str, Any] | None:
        where = f"Mastodon at {self._host}"
        me = _checked(
            await reach(self._client.get("/api/v1/accounts/verify_credentials"), where), now=utcnow()
        )
        wanted = _words(text)
        statuses = _listed(
            await reach(
                self._client.get(f"/api/v1/accounts/{me.get('id')}/statuses", params={"limit": SEARCHED}),
                where,
            )
        )
        for status in statuses:
            if _words(_plain(str(status.get("content") or ""))) == wanted:
                return status
        scheduled = _listed(
            await reach(self._client.get("/api/v1/scheduled_statuses", params={"limit": SEARCHED}), where)
        )
        for status in scheduled:
            params = status.get("params")
            if isinstance(params, dict) and _words(str(params.get("text") or "")) == wanted:
                return status
        return None

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


def _listed(response: httpx.Response) -> list[dict[str, Any]]:
    """The JSON array of objects a 2xx answer holds (a list of statuses), classified as ``_checked`` does."""
    if not 200 <= response.status_code < 300:
        _checked(response, now=utcnow())  # raises, classified
    try:
        found = response.json()
    except ValueError:
        found = None
    if not isinstance(found, list):
        raise PermanentConnectorError(
            f"Mastodon answered {response.status_code} with something other than a list"
        )
    return [item for item in found if isinstance(item, dict)]


def _plain(content: str) -> str:
    """A status's HTML as the text it was posted from: Mastodon wraps lines in <p> and <br>, and links in <a>
    and <span> (the whole address stays in the text)."""
    return html.unescape(_TAG.sub("", _PARAGRAPH.sub("\n\n", _LINE_BREAK.sub("\n", content))))


def _words(text: str) -> str:
    return " ".join(text.split())


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
