"""Bolt checks each request's signature itself unless its caller says it has checked it already (the web
server does, on the raw body, before Bolt sees the request)."""

from __future__ import annotations

from slack_bolt.request.async_request import AsyncBoltRequest
from slack_sdk.web.async_client import AsyncWebClient

from bot.bootstrap import Aios
from bot.slack_app import build_slack_app
from tests.fakes.slack_api import TOKEN, FakeSlackApi
from tests.fakes.slack_payloads import SIGNING_SECRET, sign, slash_command


def request(body: str, content_type: str, headers: dict[str, str]) -> AsyncBoltRequest:
    return AsyncBoltRequest(body=body, headers={"Content-Type": content_type, **headers})


async def test_an_app_its_caller_has_not_verified_for_refuses_an_unsigned_request(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    client = AsyncWebClient(token=TOKEN, base_url=slack_api.url)
    app = build_slack_app(aios, client, SIGNING_SECRET)
    body, content_type = slash_command("help", user="U0ALICE")

    unsigned = await app.async_dispatch(request(body, content_type, {}))
    forged = await app.async_dispatch(request(body, content_type, sign(body, secret="not-the-secret")))
    signed = await app.async_dispatch(request(body, content_type, sign(body)))

    assert unsigned.status == 401 and forged.status == 401
    assert signed.status == 200


async def test_an_app_verified_by_its_caller_leaves_the_check_to_it(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    client = AsyncWebClient(token=TOKEN, base_url=slack_api.url)
    app = build_slack_app(aios, client, SIGNING_SECRET, verified_by_caller=True)
    body, content_type = slash_command("help", user="U0ALICE")
    assert (await app.async_dispatch(request(body, content_type, {}))).status == 200
