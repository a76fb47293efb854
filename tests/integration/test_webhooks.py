"""webhook.post: signed JSON to a local receiver that checks the signature, exactly once per key."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
import stamina
from pydantic import ValidationError
from sqlmodel import col, select

from bot.bootstrap import Aios
from bot.explain import explain
from connectors.actions import WebhookPost
from connectors.base import ConnectorContext
from connectors.errors import ConnectorSettingError, PermanentConnectorError, TransientConnectorError
from connectors.webhooks import Webhooks, parse_webhooks
from runtime.intake import IncomingIntent
from runtime.messages import DecideApproval, ExecuteAction, ProposeAction
from storage.ids import format_id
from storage.records import Approval, Decision, ProposedAction
from storage.unit_of_work import UnitOfWorkFactory
from tests.conftest import Clock
from tests.fakes.aios_process import free_port
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.webhook_receiver import SECRET, Scripted, WebhookReceiver
from tests.integration.conftest import CHANNEL, MANAGER, REQUESTER, everything_stored, start_aios

KEY = "9c" * 32
# A path token, as many receivers put in their URLs: as secret as the signing secret.
TOKEN_PATH = "/hooks/T0KEN-in-the-path-5521"
PACKAGED_POLICY = Path(__file__).parents[2] / "policies" / "default_policy.yaml"


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with WebhookReceiver() as server:
        yield server


def setting(receiver: WebhookReceiver, secret: str = SECRET) -> str:
    return json.dumps(
        {
            "crm": {"url": receiver.url(TOKEN_PATH), "secret": secret},
            "audit": {"url": receiver.url(), "secret": "x"},
        }
    )


@pytest.fixture
async def webhooks(units: UnitOfWorkFactory, receiver: WebhookReceiver) -> AsyncIterator[Webhooks]:
    connector = build(units, setting(receiver))
    yield connector
    await connector.close()


def build(units: UnitOfWorkFactory, value: str, timeout: float = 10.0) -> Webhooks:
    context = ConnectorContext(
        units_of_work=units, http_timeout_seconds=timeout, settings={"AIOS_WEBHOOKS": value}
    )
    connector = Webhooks.configured(context)
    assert connector is not None
    return connector


def absent_url() -> str:
    """A loopback port nothing listens on."""
    return f"http://127.0.0.1:{free_port()}{TOKEN_PATH}"


def post(body: dict[str, Any] | None = None, webhook: str = "crm") -> WebhookPost:
    return WebhookPost(webhook=webhook, body=body or {"event": "refund.made", "order": 1003, "amount": 40.0})


async def test_a_delivery_is_signed_and_carries_the_key(
    webhooks: Webhooks, receiver: WebhookReceiver
) -> None:
    result = await webhooks.execute(post({"event": "refund.made", "note": "Ana’s blender"}), KEY)

    assert result == {"webhook": "crm", "status": 200, "replayed": False}
    [delivery] = receiver.delivered()  # the receiver checked the signature over the raw body
    assert receiver.refused == []
    assert delivery.path == TOKEN_PATH
    assert delivery.body == {"event": "refund.made", "note": "Ana’s blender"}
    assert delivery.headers["Idempotency-Key"] == KEY
    assert delivery.headers["Content-Type"] == "application/json"
    assert delivery.headers["X-AIOS-Signature"].startswith("v0=")


async def test_the_same_key_delivers_once_and_lookup_answers_from_the_ledger(
    units: UnitOfWorkFactory, webhooks: Webhooks, receiver: WebhookReceiver
) -> None:
    first = await webhooks.execute(post(), KEY)
    assert await webhooks.execute(post(), KEY) == {**first, "replayed": True}
    assert await webhooks.lookup(post(), KEY) == {**first, "replayed": True}
    assert await webhooks.lookup(post(), "an-unknown-key") is None

    restarted = build(units, setting(receiver))  # after a crash: a fresh instance knows only the ledger
    try:
        assert await restarted.lookup(post(), KEY) == {**first, "replayed": True}
        assert await restarted.execute(post(), KEY) == {**first, "replayed": True}
    finally:
        await restarted.close()
    assert len(receiver.delivered()) == 1


async def test_a_wrong_secret_is_refused_by_the_receiver_for_good(
    units: UnitOfWorkFactory, receiver: WebhookReceiver
) -> None:
    connector = build(units, setting(receiver, secret="not-the-shared-secret"))
    try:
        with pytest.raises(PermanentConnectorError, match="refused the delivery with 401") as raised:
            await connector.execute(post(), KEY)
        assert await connector.lookup(post(), KEY) is None
    finally:
        await connector.close()
    assert "invalid signature" in str(raised.value)
    assert receiver.refused == ["invalid signature"] and receiver.delivered() == []


@pytest.mark.parametrize(
    ("answer", "error", "retry_after"),
    [
        (Scripted(429, "slow down", {"Retry-After": "7"}), TransientConnectorError, 7.0),
        (Scripted(503, "<html>maintenance</html>"), TransientConnectorError, None),
        (Scripted(404, "no such hook"), PermanentConnectorError, None),
    ],
    ids=["429", "503", "404"],
)
async def test_rate_limits_and_server_errors_are_transient_other_refusals_permanent(
    webhooks: Webhooks,
    receiver: WebhookReceiver,
    answer: Scripted,
    error: type[Exception],
    retry_after: float | None,
) -> None:
    receiver.answer_next(answer)
    with pytest.raises(error) as raised:
        await webhooks.execute(post(), KEY)
    assert type(raised.value) is error
    assert f"{answer.status}: {answer.text}" in str(raised.value)
    if isinstance(raised.value, TransientConnectorError):
        assert raised.value.retry_after == retry_after
    assert await webhooks.lookup(post(), KEY) is None

    await webhooks.execute(post(), KEY)  # the receiver takes it now
    assert len(receiver.delivered()) == 1


async def test_the_receivers_message_is_cut_short(webhooks: Webhooks, receiver: WebhookReceiver) -> None:
    receiver.answer_next(Scripted(422, "field missing: " + "x" * 5000))
    with pytest.raises(PermanentConnectorError) as raised:
        await webhooks.execute(post(), KEY)
    message = str(raised.value)
    assert "field missing: xxx" in message and message.endswith("…") and len(message) < 300


async def test_a_slow_receiver_is_transient(units: UnitOfWorkFactory, receiver: WebhookReceiver) -> None:
    connector = build(units, setting(receiver), timeout=0.2)
    try:
        receiver.answer_next(Scripted(200, delay=1.0))
        with pytest.raises(TransientConnectorError, match="did not answer in time"):
            await connector.execute(post(), KEY)
    finally:
        await connector.close()


async def test_an_absent_receiver_is_transient_and_its_url_is_not_told(units: UnitOfWorkFactory) -> None:
    connector = build(units, json.dumps({"crm": {"url": absent_url(), "secret": SECRET}}))
    try:
        with pytest.raises(TransientConnectorError, match=r"could not be reached \(ConnectError\)") as raised:
            await connector.execute(post(), KEY)
        assert await connector.lookup(post(), KEY) is None
    finally:
        await connector.close()
    assert TOKEN_PATH not in str(raised.value) and "127.0.0.1" not in str(raised.value)


async def test_an_unknown_webhook_name_is_refused_naming_the_configured_ones(webhooks: Webhooks) -> None:
    with pytest.raises(
        PermanentConnectorError, match=r"no webhook named 'billing'.*audit, crm \(AIOS_WEBHOOKS\)"
    ):
        await webhooks.execute(post(webhook="billing"), KEY)


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ({"blob": "x" * 17_000}, "at most 16,384 are sent"),
        ({"n": float("nan")}, "must be a JSON object"),
    ],
)
def test_a_body_that_is_too_big_or_not_json_is_refused(body: dict[str, Any], says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        WebhookPost(webhook="crm", body=body)


@pytest.mark.parametrize(
    ("value", "says"),
    [
        ("{crm: https://x}", "AIOS_WEBHOOKS is not valid JSON"),
        ('["https://x"]', "must be a JSON object of named webhooks"),
        ("{}", "must be a JSON object of named webhooks"),
        ('{"crm": {"secret": "s3cr3t-value"}}', "webhook 'crm' needs a url"),
        ('{"crm": {"url": "ftp://h/T0KEN", "secret": "s3cr3t-value"}}', "webhook 'crm' needs a url"),
        ('{"crm": {"url": "https://h:99999/T0KEN", "secret": "s3cr3t-value"}}', "webhook 'crm' needs a url"),
        ('{"crm": {"url": "https://h/T0KEN"}}', "webhook 'crm' needs a secret"),
        ('{"crm": {"url": "https://h/T0KEN", "secret": ""}}', "webhook 'crm' needs a secret"),
        ('{"crm": {"url": "https://h/T0KEN", "secret": "s3cr3t-value", "x": 1}}', "unknown key 'x'"),
        ('{"c rm": {"url": "https://h/T0KEN", "secret": "s3cr3t-value"}}', "a webhook's name must be"),
        ('{"crm": "https://h/T0KEN"}', "must be an object with url and secret"),
    ],
)
def test_a_malformed_setting_is_refused_without_repeating_urls_or_secrets(value: str, says: str) -> None:
    with pytest.raises(ConnectorSettingError, match=says) as raised:
        parse_webhooks(value)
    assert "s3cr3t-value" not in str(raised.value) and "T0KEN" not in str(raised.value)


async def test_health_checks_that_every_receiver_accepts_connections(
    units: UnitOfWorkFactory, webhooks: Webhooks, receiver: WebhookReceiver
) -> None:
    assert await webhooks.health() == "2 webhook(s) reachable: crm, audit"
    assert receiver.delivered() == []
    value = json.dumps(
        {"crm": {"url": receiver.url(), "secret": SECRET}, "gone": {"url": absent_url(), "secret": "s"}}
    )
    partly = build(units, value)
    try:
        with pytest.raises(PermanentConnectorError, match="webhook gone; check its url in AIOS_WEBHOOKS"):
            await partly.health()
    finally:
        await partly.close()


@pytest.fixture
async def webhook_aios(
    database_url: str, slack_api: FakeSlackApi, receiver: WebhookReceiver, clock: Clock, tmp_path: Path
) -> AsyncIterator[Aios]:
    """The bot on the packaged policy, with the receiver configured as webhook ``crm``."""
    instance = await start_aios(
        database_url,
        slack_api,
        clock,
        tmp_path,
        policy=PACKAGED_POLICY.read_text(),
        AIOS_WEBHOOKS=setting(receiver),
    )
    yield instance
    await instance.close()


async def propose_webhook(aios: Aios, body: dict[str, Any]) -> ProposedAction:
    """File a webhook.post the way an outside client proposes an action: an intent, then the action itself."""
    intent_id = await aios.accept(
        IncomingIntent(
            source="mention",
            team_id="T0FAKE",
            channel=CHANNEL,
            thread_ts="1700000300.000100",
            user=REQUESTER,
            text="tell the CRM about the refund on order 1003",
        )
    )
    assert intent_id is not None
    await aios.process(
        ProposeAction(intent_id, "returns", "webhook.post", {"webhook": "crm", "body": body}, "sync")
    )
    async with aios.units() as uow:
        return (await uow.session.exec(select(ProposedAction))).one()


async def approve(aios: Aios, action: ProposedAction) -> ProposedAction:
    async with aios.units() as uow:
        approval = (await uow.session.exec(select(Approval))).one()
    assert approval.id is not None and approval.approver_roles == ["manager"]
    await aios.process(DecideApproval(approval.id, MANAGER, approve=True, channel=CHANNEL))
    async with aios.units() as uow:
        done = await uow.get(ProposedAction, action.id)
    assert done is not None
    return done


async def test_the_packaged_policy_sends_a_webhook_to_a_manager_and_it_is_delivered_once(
    webhook_aios: Aios, receiver: WebhookReceiver, slack_api: FakeSlackApi
) -> None:
    proposed = await propose_webhook(webhook_aios, {"event": "refund.made", "order": 1003})
    assert proposed.status == "awaiting_approval" and receiver.delivered() == []
    async with webhook_aios.units() as uow:
        decision = (await uow.session.exec(select(Decision).where(col(Decision.kind) == "policy"))).one()
    assert decision.rule_id == "webhooks-need-a-manager"

    executed = await approve(webhook_aios, proposed)
    assert executed.status == "executed" and executed.id is not None
    [delivery] = receiver.delivered()
    assert delivery.body == {"event": "refund.made", "order": 1003}
    assert any(
        "Done: POST to webhook crm" in c.params["text"] for c in slack_api.calls_to("chat.postMessage")
    )
    await webhook_aios.process(ExecuteAction(executed.id))  # a second click's command
    assert len(receiver.delivered()) == 1


async def test_no_url_token_or_secret_reaches_a_record_a_message_or_an_explanation(
    webhook_aios: Aios, receiver: WebhookReceiver, slack_api: FakeSlackApi
) -> None:
    receiver.answer_next(Scripted(400, "bad payload"))
    with stamina.set_testing(True):
        failed = await approve(webhook_aios, await propose_webhook(webhook_aios, {"event": "refund.made"}))
    assert failed.status == "failed" and failed.id is not None

    stored = await everything_stored(webhook_aios)
    said = "\n".join(str(c.params) for c in slack_api.calls)
    explained = await explain(webhook_aios.units, format_id("A", failed.id))
    assert "the webhook crm refused the delivery with 400: bad payload" in stored
    assert "bad payload" in said
    for text in (stored, said, explained):
        assert SECRET not in text and TOKEN_PATH not in text
