"""End to end: a webhook asked for in Slack (and proposed through `aios mcp`) reaches the receiver once, signed,
after a manager approves it in the real `aios serve`."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.e2e.conftest import Server
from tests.e2e.test_mcp_server import mcp_session, text
from tests.e2e.test_serve import approval_value, ephemerals_for, in_thread, send
from tests.fakes.aios_process import aios_env, running_aios_serve
from tests.fakes.slack_api import ApiCall, FakeSlackApi
from tests.fakes.slack_payloads import block_action, slash_command
from tests.fakes.webhook_receiver import SECRET, Delivery, WebhookReceiver

REQUESTER, TEAMMATE, MANAGER = "U0ALICE", "U0BOB", "U0MANAGER"
TOKEN_PATH = "/hooks/T0KEN-in-the-path-3307"


@pytest.fixture(scope="module")
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as server:
        yield server


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, receiver: WebhookReceiver) -> Iterator[Server]:
    """`aios serve` on the packaged policy, with the receiver configured as webhook ``crm``."""
    database = tmp_path_factory.mktemp("webhooks") / "aios.db"
    with FakeSlackApi() as slack:
        env = aios_env(f"sqlite+aiosqlite:///{database}", slack.url)
        env["AIOS_WEBHOOKS"] = json.dumps({"crm": {"url": receiver.url(TOKEN_PATH), "secret": SECRET}})
        with running_aios_serve(env) as serve:
            yield Server(serve.url, env, slack, serve.log)


def deliveries_of(receiver: WebhookReceiver, event: str) -> list[Delivery]:
    return [d for d in receiver.delivered() if d.body.get("event") == event]


def assert_signed_by_us(delivery: Delivery) -> None:
    """What a receiver checks, computed here from the raw body the signature covers."""
    raw = json.dumps(delivery.body, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
    timestamp = delivery.headers["X-AIOS-Request-Timestamp"]
    expected = hmac.new(SECRET.encode(), f"v0:{timestamp}:".encode() + raw, hashlib.sha256).hexdigest()
    assert delivery.headers["X-AIOS-Signature"] == f"v0={expected}"
    assert len(delivery.headers["Idempotency-Key"]) == 64
    assert delivery.path == TOKEN_PATH


def refusals_for(user: str) -> Callable[[FakeSlackApi], list[str]]:
    return lambda slack: ephemerals_for(slack, user)


def message_ts(slack: FakeSlackApi, card: ApiCall) -> str:
    return str(slack.wait_for(lambda s: card.response.get("ts")))


async def test_a_webhook_asked_for_in_slack_is_posted_once_after_a_manager_approves(
    server: Server, receiver: WebhookReceiver
) -> None:
    slack = server.slack
    status, _, _ = await send(
        server, *slash_command('post {"event":"restock","sku":"MUG-1"} to webhook crm', user=REQUESTER)
    )
    assert status == 200
    card = slack.wait_for(
        lambda s: [c for c in s.approval_requests() if "POST to webhook crm" in c.params["text"]]
    )[0]
    assert "MUG-1" in card.params["text"] and "T0KEN" not in json.dumps(card.params)
    approval, ts = approval_value(card), message_ts(slack, card)

    # Neither a teammate nor the requester is a manager.
    for user in (TEAMMATE, REQUESTER):
        await send(server, *block_action("aios_approve", approval, user=user, message_ts=ts))
        refused = slack.wait_for(refusals_for(user))[0]
        assert "Only the manager role can decide" in refused
    assert deliveries_of(receiver, "restock") == []

    click = block_action("aios_approve", approval, user=MANAGER, message_ts=ts)
    await send(server, *click)
    await send(server, *click)  # a second click changes nothing
    thread = str(card.params["thread_ts"])
    slack.wait_for(lambda s: in_thread(s, thread, "Done: POST to webhook crm"))
    slack.wait_for(lambda s: [t for t in ephemerals_for(s, MANAGER) if "already decided" in t])
    [delivery] = deliveries_of(receiver, "restock")
    assert delivery.body == {"event": "restock", "sku": "MUG-1"}
    assert_signed_by_us(delivery)
    assert receiver.refused == []


async def test_a_webhook_proposed_through_aios_mcp_waits_for_the_manager_and_is_posted_once(
    server: Server, receiver: WebhookReceiver, tmp_path: Path
) -> None:
    slack, body = server.slack, {"event": "price-change", "sku": "MUG-1", "price": 18.5}
    async with mcp_session(server.env, tmp_path / "stderr.log") as session:
        tools = {tool.name: tool for tool in (await session.list_tools()).tools}
        assert "webhook.post" in (tools["propose_action"].description or "")
        arguments = {
            "action": "webhook.post",
            "rationale": "the shop's price list changed",
            "requester": REQUESTER,
            "channel": "C0SHOP",
        }
        unknown = await session.call_tool(
            "propose_action", {**arguments, "params": {"webhook": "billing", "body": body}}
        )
        assert unknown.is_error
        assert "no webhook named 'billing' is configured; the configured ones are crm" in text(unknown)

        result = await session.call_tool(
            "propose_action", {**arguments, "params": {"webhook": "crm", "body": body}}
        )
        assert not result.is_error, text(result)
        assert result.structured_content is not None
        (proposal,) = result.structured_content["proposals"]
        assert (proposal["verdict"], proposal["rule"]) == ("require_approval", "webhooks-need-a-manager")
        assert proposal["status"] == "awaiting_approval"

    card = slack.wait_for(lambda s: [c for c in s.approval_requests() if "price-change" in c.params["text"]])[
        0
    ]
    assert approval_value(card) and deliveries_of(receiver, "price-change") == []
    click = block_action(
        "aios_approve", approval_value(card), user=MANAGER, message_ts=message_ts(slack, card)
    )
    await send(server, *click)
    slack.wait_for(lambda s: in_thread(s, str(card.params["thread_ts"]), "Done: POST to webhook crm"))
    [delivery] = deliveries_of(receiver, "price-change")
    assert delivery.body == body
    assert_signed_by_us(delivery)
