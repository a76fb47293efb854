"""`GET /metrics` of the real aiohttp app after a gated refund planned by Claude (the fake Messages API): what
ran, the money it moved, the wait for approval, the model tokens and spend, per agent and per completed run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from slack_sdk.web.async_client import AsyncWebClient
from sqlmodel import select

from bot.bootstrap import Aios
from bot.slack_app import build_slack_app
from bot.web import build_web_app
from runtime.messages import DecideApproval
from storage.records import Approval, LlmCall
from tests.fakes.anthropic_api import FakeAnthropicApi, Reply, ToolUse
from tests.fakes.slack_api import TOKEN, FakeSlackApi
from tests.fakes.slack_payloads import SIGNING_SECRET
from tests.integration.conftest import CHANNEL, MANAGER, ask

Series = dict[tuple[str, frozenset[tuple[str, str]]], float]


@dataclass
class Scraper:
    client: TestClient  # type: ignore[type-arg]

    async def __call__(self) -> Series:
        response = await self.client.get("/metrics")
        assert response.status == 200
        return {
            (sample.name, frozenset(sample.labels.items())): sample.value
            for family in text_string_to_metric_families(await response.text())
            for sample in family.samples
        }


@pytest.fixture
async def scrape(claude_aios: Aios, slack_api: FakeSlackApi) -> AsyncIterator[Scraper]:
    client = AsyncWebClient(token=TOKEN, base_url=slack_api.url)
    app = build_web_app(claude_aios, build_slack_app(claude_aios, client, SIGNING_SECRET), SIGNING_SECRET)
    async with TestClient(TestServer(app)) as test_client:
        yield Scraper(test_client)


def value(series: Series, name: str, **labels: str) -> float:
    return series.get((name, frozenset(labels.items())), 0.0)


async def test_a_gated_refund_shows_in_the_business_metrics(
    claude_aios: Aios, anthropic_api: FakeAnthropicApi, scrape: Scraper
) -> None:
    anthropic_api.script(
        Reply("", (ToolUse("route_to_agent", {"agent": "returns", "reason": "a damaged order"}),)),
        Reply(
            "Refunding $250.",
            (ToolUse("shop_refund", {"order_id": 1001, "amount": 250.0, "reason": "broken"}),),
        ),
    )
    before = await scrape()
    await ask(claude_aios, "the customer on order 1001 says it came in pieces, sort it out")

    waiting = await scrape()
    assert value(waiting, "aios_approvals_waiting") == 1
    assert value(waiting, "aios_approval_oldest_wait_seconds") >= 0
    async with claude_aios.units() as uow:
        [approval] = (await uow.session.exec(select(Approval))).all()
        ledger = list((await uow.session.exec(select(LlmCall))).all())
    assert approval.id is not None
    await claude_aios.process(DecideApproval(approval.id, MANAGER, approve=True, channel=CHANNEL))
    after = await scrape()

    def grew(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    assert value(after, "aios_approvals_waiting") == 0
    assert (
        grew(
            "aios_actions_executed_total", connector="SandboxShop", action="shop.refund", outcome="succeeded"
        )
        == 1
    )
    assert grew("aios_money_moved_usd_total", action="shop.refund") == 250.0
    assert grew("aios_time_to_approval_seconds_count", outcome="approved") == 1
    assert {(c.agent, c.model) for c in ledger} == {
        ("dispatcher", "claude-haiku-4-5"),
        ("returns", "claude-sonnet-4-6"),
    }
    for call in ledger:
        assert (
            grew("aios_model_tokens_total", agent=call.agent, model=call.model, kind="input")
            == call.input_tokens
        )
        assert (
            grew("aios_model_tokens_total", agent=call.agent, model=call.model, kind="output")
            == call.output_tokens
        )
        assert grew("aios_model_cost_usd_total", agent=call.agent, model=call.model) == pytest.approx(
            call.cost_usd
        )
    assert grew("aios_automation_cost_usd_count") == 1
    assert grew("aios_automation_cost_usd_sum") == pytest.approx(sum(c.cost_usd for c in ledger))
