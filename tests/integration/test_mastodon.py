"""The Mastodon connector against Mastodon's documented answers (respx): POST /api/v1/statuses with our key as
Idempotency-Key, a Status (200) or a ScheduledStatus (200) back, 401, 422, 429 with X-RateLimit-Reset; a request
that timed out after Mastodon created the status is retried under the same key and posts once; a retry after
Mastodon forgot the key is answered from our ledger. And the sandbox that stands in for it."""

from __future__ import annotations

import html
import json
import re
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import respx
import stamina
from sqlmodel import select

from connectors.actions import SocialPost
from connectors.base import ConnectorContext
from connectors.errors import (
    ConnectorSettingError,
    OutcomeUnknownError,
    PermanentConnectorError,
    TransientConnectorError,
)
from connectors.registry import ConnectorRegistry
from connectors.sandbox_state import sandbox_state
from connectors.sent_ledger import SentLedger
from connectors.social_mastodon import MastodonSocial
from connectors.social_sandbox import SandboxSocial
from runtime.handlers.execution import CONNECTOR_ATTEMPTS
from storage.records import SentMessage
from storage.unit_of_work import UnitOfWorkFactory

SERVER = "https://mastodon.example"
TOKEN = "mastodon-token-9f8e7d6c5b4a"
KEY = "a" * 64
TEXT = "Spring lookbook: ten looks for April.\n\nhttps://blog.example.com/posts/spring-lookbook"


class FakeMastodon:
    """POST /api/v1/statuses as Mastodon documents it: a repeat of an Idempotency-Key answers with the status
    the first request created (for an hour, which ``forget_keys`` ends)."""

    def __init__(self) -> None:
        self.statuses: list[dict[str, Any]] = []
        self.answers: list[dict[str, Any]] = []  # Statuses and ScheduledStatuses, oldest first
        self.keys: list[str | None] = []
        self._by_key: dict[str, dict[str, Any]] = {}
        self.time_out_once = False  # create the status, then let the answer time out

    def forget_keys(self) -> None:
        self._by_key.clear()

    def __call__(self, request: httpx.Request) -> httpx.Response:
        assert request.headers["Authorization"] == f"Bearer {TOKEN}"
        key = request.headers.get("Idempotency-Key")
        self.keys.append(key)
        if key in self._by_key:
            return httpx.Response(200, json=self._by_key[key])
        body = json.loads(request.content)
        number = str(len(self.statuses) + 1)
        if "scheduled_at" in body:
            answer = {
                "id": number,
                "scheduled_at": body["scheduled_at"],
                "params": {"text": body["status"], "visibility": "public", "scheduled_at": None},
                "media_attachments": [],
            }
        else:
            answer = {
                "id": number,
                "created_at": "2026-11-27T10:00:00.000Z",
                "uri": f"{SERVER}/users/shop/statuses/{number}",
                "url": f"{SERVER}/@shop/{number}",
                "content": _rendered(body["status"]),
                "visibility": "public",
            }
        self.statuses.append(body)
        self.answers.append(answer)
        if key is not None:
            self._by_key[key] = answer
        if self.time_out_once:
            self.time_out_once = False
            raise httpx.ReadTimeout("timed out", request=request)
        return httpx.Response(200, json=answer)

    def account_statuses(self, request: httpx.Request) -> httpx.Response:
        """GET /api/v1/accounts/1/statuses: the account's statuses, newest first."""
        return httpx.Response(200, json=[a for a in reversed(self.answers) if "params" not in a])

    def scheduled_statuses(self, request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=[a for a in self.answers if "params" in a])


def _rendered(text: str) -> str:
    """A status's content as Mastodon renders it: paragraphs, line breaks, and links split into spans."""

    def link(match: re.Match[str]) -> str:
        url = match.group(0)
        scheme, rest = url.split("://", 1)
        return (
            f'<a href="{url}" rel="nofollow noopener" target="_blank"><span class="invisible">{scheme}://</span>'
            f'<span class="ellipsis">{rest[:30]}</span><span class="invisible">{rest[30:]}</span></a>'
        )

    paragraphs = [
        re.sub(r"https?://\S+", link, html.escape(p, quote=False)).replace("\n", "<br />")
        for p in text.split("\n\n")
    ]
    return "".join(f"<p>{p}</p>" for p in paragraphs)


@pytest.fixture
def mastodon_api() -> Iterator[tuple[respx.MockRouter, FakeMastodon]]:
    fake = FakeMastodon()
    with respx.mock(base_url=SERVER, assert_all_called=False) as api:
        api.post("/api/v1/statuses").mock(side_effect=fake)
        api.get("/api/v1/accounts/1/statuses").mock(side_effect=fake.account_statuses)
        api.get("/api/v1/scheduled_statuses").mock(side_effect=fake.scheduled_statuses)
        api.get("/api/v1/accounts/verify_credentials").respond(
            json={"id": "1", "username": "shop", "acct": "shop"}
        )
        yield api, fake


@pytest.fixture
async def mastodon(units: UnitOfWorkFactory) -> AsyncIterator[MastodonSocial]:
    connector = MastodonSocial.configured(
        ConnectorContext(units, settings={"MASTODON_URL": SERVER + "/", "MASTODON_ACCESS_TOKEN": TOKEN})
    )
    assert connector is not None
    yield connector
    await connector.close()


def post(publish_at: datetime | None = None, network: str = "mastodon") -> SocialPost:
    return SocialPost.model_validate(
        {"network": network, "text": TEXT, "post": "spring-lookbook", "publish_at": publish_at}
    )


def test_settings_select_mastodon_and_name_what_is_missing(units: UnitOfWorkFactory) -> None:
    assert MastodonSocial.configured(ConnectorContext(units)) is None
    assert isinstance(SandboxSocial.configured(ConnectorContext(units)), SandboxSocial)
    half = ConnectorContext(units, settings={"MASTODON_URL": SERVER})
    assert SandboxSocial.configured(half) is None
    with pytest.raises(ConnectorSettingError, match="MASTODON_ACCESS_TOKEN is not set"):
        MastodonSocial.configured(half)
    with pytest.raises(ConnectorSettingError, match="MASTODON_URL must be the server's address"):
        MastodonSocial.configured(
            ConnectorContext(
                units, settings={"MASTODON_URL": "mastodon.example", "MASTODON_ACCESS_TOKEN": TOKEN}
            )
        )


async def test_a_post_now_sends_the_key_and_returns_the_status(
    mastodon: MastodonSocial, mastodon_api: tuple[respx.MockRouter, FakeMastodon]
) -> None:
    _, fake = mastodon_api
    result = await mastodon.execute(post(), KEY)
    assert fake.keys == [KEY]
    assert fake.statuses == [{"status": TEXT}]
    assert result == {
        "status_id": "1",
        "status": "posted",
        "url": f"{SERVER}/@shop/1",
        "publish_at": "2026-11-27T10:00:00.000Z",
        "replayed": False,
    }
    assert await mastodon.lookup(post(), KEY) == {**result, "replayed": True}
    assert await mastodon.lookup(post(), "b" * 64) is None


async def test_a_later_time_is_scheduled_and_a_near_or_past_one_is_posted_at_once(
    mastodon: MastodonSocial, mastodon_api: tuple[respx.MockRouter, FakeMastodon]
) -> None:
    _, fake = mastodon_api
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=2)
    scheduled = await mastodon.execute(post(later), "1" * 64)
    assert fake.statuses[0] == {"status": TEXT, "scheduled_at": later.isoformat()}
    assert (scheduled["status"], scheduled["scheduled_status_id"]) == ("scheduled", "1")
    assert scheduled["publish_at"] == later.isoformat()

    soon = await mastodon.execute(post(datetime.now(UTC) + timedelta(minutes=3)), "2" * 64)
    assert fake.statuses[1] == {"status": TEXT}
    assert soon["note"] == "posted at once: Mastodon schedules posts only 5 minutes or more ahead"
    past = await mastodon.execute(post(datetime.now(UTC) - timedelta(minutes=10)), "3" * 64)
    assert fake.statuses[2] == {"status": TEXT}
    assert past["status"] == "posted" and "had passed" in past["note"]


async def test_a_timeout_after_mastodon_posted_is_retried_under_the_same_key_and_posts_once(
    mastodon: MastodonSocial, mastodon_api: tuple[respx.MockRouter, FakeMastodon]
) -> None:
    _, fake = mastodon_api
    fake.time_out_once = True
    with pytest.raises(TransientConnectorError, match="did not answer in time"):
        await mastodon.execute(post(), KEY)
    first = await mastodon.execute(post(), KEY)  # the executor's retry: same action, same key
    assert fake.keys == [KEY, KEY]
    assert len(fake.statuses) == 1
    assert first["status_id"] == "1"

    fake.forget_keys()  # past Mastodon's hour: only our ledger still knows
    again = await mastodon.execute(post(), KEY)
    assert again == {**first, "replayed": True}
    assert fake.keys == [KEY, KEY] and len(fake.statuses) == 1


async def test_through_the_registry_a_timeout_is_retried_and_posts_once(
    mastodon: MastodonSocial, mastodon_api: tuple[respx.MockRouter, FakeMastodon]
) -> None:
    """As the executor retries (stamina, on transient errors): one status for two requests."""
    _, fake = mastodon_api
    fake.time_out_once = True
    registry = ConnectorRegistry([mastodon])
    with stamina.set_testing(True, attempts=CONNECTOR_ATTEMPTS):
        async for attempt in stamina.retry_context(on=TransientConnectorError, attempts=CONNECTOR_ATTEMPTS):
            with attempt:
                result = await registry.execute(post(), KEY)
    assert result["status_id"] == "1"
    assert fake.keys == [KEY, KEY] and len(fake.statuses) == 1


@pytest.mark.parametrize(
    ("status", "answer", "error", "says"),
    [
        (
            401,
            {"error": "The access token is invalid"},
            PermanentConnectorError,
            "Mastodon refused the access token (401: The access token is invalid); check MASTODON_ACCESS_TOKEN",
        ),
        (
            422,
            {"error": "Validation failed: Text character limit of 500 exceeded"},
            PermanentConnectorError,
            "Mastodon refused the post (422: Validation failed: Text character limit of 500 exceeded)",
        ),
        (503, {"error": "Service unavailable"}, TransientConnectorError, "Mastodon answered 503"),
    ],
)
async def test_mastodon_errors_are_told_in_its_words(
    mastodon: MastodonSocial, status: int, answer: dict[str, str], error: type[Exception], says: str
) -> None:
    with respx.mock(base_url=SERVER) as api:
        api.post("/api/v1/statuses").respond(status, json=answer)
        with pytest.raises(error) as raised:
            await mastodon.execute(post(), KEY)
    assert says in str(raised.value)
    assert TOKEN not in str(raised.value)
    assert await mastodon.lookup(post(), KEY) is None  # nothing recorded as posted


async def test_429_waits_until_the_rate_limit_resets_then_posts(
    mastodon: MastodonSocial, mastodon_api: tuple[respx.MockRouter, FakeMastodon]
) -> None:
    api, fake = mastodon_api
    asked = datetime.now(UTC)
    reset_at = asked + timedelta(seconds=42)
    reset = reset_at.isoformat().replace("+00:00", "Z")
    limited = httpx.Response(
        429,
        json={"error": "Too many requests"},
        headers={"X-RateLimit-Limit": "300", "X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset},
    )
    answers = iter([limited])

    def limited_once(request: httpx.Request) -> httpx.Response:
        return next(answers, None) or fake(request)

    api.post("/api/v1/statuses").mock(side_effect=limited_once)
    with pytest.raises(TransientConnectorError, match="Mastodon answered 429: Too many requests") as raised:
        await mastodon.execute(post(), KEY)
    answered = datetime.now(UTC)
    # The wait until the reset, as of the moment the answer was read: a loaded machine may take seconds to get there.
    waits = (reset_at - answered).total_seconds(), (reset_at - asked).total_seconds()
    assert raised.value.retry_after is not None and waits[0] <= raised.value.retry_after <= waits[1]
    assert (await mastodon.execute(post(), KEY))["status_id"] == "1"
    assert len(fake.statuses) == 1


async def test_another_network_is_refused_before_approval_and_at_execution(
    mastodon: MastodonSocial, mastodon_api: tuple[respx.MockRouter, FakeMastodon]
) -> None:
    _, fake = mastodon_api
    bluesky = post(network="bluesky")
    refusal = await mastodon.refusal(bluesky)
    assert refusal is not None and "posts to Mastodon (mastodon.example) only" in refusal
    with pytest.raises(PermanentConnectorError):
        await mastodon.execute(bluesky, KEY)
    assert fake.statuses == []
    assert await mastodon.refusal(post()) is None


async def test_health_names_the_account(
    mastodon: MastodonSocial, mastodon_api: tuple[respx.MockRouter, FakeMastodon]
) -> None:
    assert await mastodon.health() == "Mastodon at mastodon.example: authenticated as @shop"


async def test_the_sandbox_records_each_key_once(units: UnitOfWorkFactory) -> None:
    sandbox = SandboxSocial(ConnectorContext(units))
    later = datetime.now(UTC).replace(microsecond=0) + timedelta(hours=1)
    first = await sandbox.execute(post(later, network="bluesky"), KEY)
    again = await sandbox.execute(post(later, network="bluesky"), KEY)
    assert first["replayed"] is False and again == {**first, "replayed": True}
    assert await sandbox.lookup(post(), KEY) == again
    assert await sandbox.lookup(post(), "b" * 64) is None
    now = await sandbox.execute(post(), "c" * 64)
    [scheduled, posted] = (await sandbox_state(units))["social"]
    assert (scheduled["network"], scheduled["status"], scheduled["text"]) == ("bluesky", "scheduled", TEXT)
    assert datetime.fromisoformat(scheduled["publish_at"]) == later
    assert (posted["network"], posted["status"], now["status"]) == ("mastodon", "recorded", "recorded")
    assert now["note"] == "recorded in the sandbox, not posted"


async def in_flight_for(units: UnitOfWorkFactory, ago: timedelta) -> None:
    """Back-date the key's in-flight note: sent that long ago, its answer never recorded."""
    async with units() as uow:
        sent = (await uow.session.exec(select(SentMessage).where(SentMessage.idempotency_key == KEY))).one()
        assert sent.result == {"in_flight": True}
        sent.sent_at = datetime.now(UTC) - ago
        uow.session.add(sent)
        await uow.commit()


class LedgerCrash(Exception):
    """The process stopping between Mastodon's answer and the ledger's record of it."""


@pytest.mark.parametrize("later", [False, True], ids=["now", "scheduled"])
async def test_a_crash_before_the_ledger_row_is_found_on_mastodon_after_its_hour_and_not_posted_again(
    mastodon: MastodonSocial,
    mastodon_api: tuple[respx.MockRouter, FakeMastodon],
    units: UnitOfWorkFactory,
    monkeypatch: pytest.MonkeyPatch,
    later: bool,
) -> None:
    _, fake = mastodon_api
    action = post(datetime.now(UTC).replace(microsecond=0) + timedelta(days=1) if later else None)

    async def crash(*args: object) -> None:
        raise LedgerCrash

    with monkeypatch.context() as patched:
        patched.setattr(SentLedger, "record", crash)
        with pytest.raises(LedgerCrash):
            await mastodon.execute(action, KEY)
    assert len(fake.statuses) == 1
    await in_flight_for(units, timedelta(hours=2))
    fake.forget_keys()  # Mastodon's hour is over: a second POST would make a second status
    assert await mastodon.lookup(action, KEY) is None  # recovery finds no answer, and executes
    found = await mastodon.execute(action, KEY)
    assert len(fake.statuses) == 1 and fake.keys == [KEY]
    assert found["replayed"] is True and found["note"] == "found on Mastodon after its answer was lost"
    assert found["status"] == ("scheduled" if later else "posted")
    assert found["scheduled_status_id" if later else "status_id"] == "1"
    assert await mastodon.lookup(action, KEY) == found  # recorded now


async def test_within_the_hour_a_crash_before_the_ledger_row_is_posted_again_under_the_same_key(
    mastodon: MastodonSocial,
    mastodon_api: tuple[respx.MockRouter, FakeMastodon],
    units: UnitOfWorkFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _, fake = mastodon_api

    async def crash(*args: object) -> None:
        raise LedgerCrash

    with monkeypatch.context() as patched:
        patched.setattr(SentLedger, "record", crash)
        with pytest.raises(LedgerCrash):
            await mastodon.execute(post(), KEY)
    again = await mastodon.execute(post(), KEY)
    assert fake.keys == [KEY, KEY] and len(fake.statuses) == 1 and again["status_id"] == "1"


async def test_an_old_key_in_flight_whose_post_is_not_on_mastodon_is_an_unknown_outcome_not_a_second_try(
    mastodon: MastodonSocial, mastodon_api: tuple[respx.MockRouter, FakeMastodon], units: UnitOfWorkFactory
) -> None:
    _, fake = mastodon_api
    await mastodon.execute(
        post(publish_at=None).model_copy(update={"text": "Another post entirely"}), "b" * 64
    )
    await SentLedger(units, "mastodon").begin(KEY, "mastodon:mastodon.example")
    await in_flight_for(units, timedelta(hours=2))
    with pytest.raises(OutcomeUnknownError, match="check the account before asking again"):
        await mastodon.execute(post(), KEY)
    assert fake.keys == ["b" * 64]  # nothing posted under our key
