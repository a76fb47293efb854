"""What happens when the outside world misbehaves: a flaky connector, Slack refusing a call."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
import stamina
from sqlmodel import col, select

from bot.bootstrap import Aios
from bot.handlers import CONNECTOR_ATTEMPTS
from bot.intake import IncomingIntent
from bot.messages import DecideApproval, HandleIntent
from connectors.actions import Action, ShopRefund
from connectors.base import ConnectorContext
from connectors.errors import TransientConnectorError
from connectors.sandbox_cms import SandboxCms
from connectors.sandbox_outbox import SandboxOutbox
from connectors.sandbox_shop import SandboxShop
from connectors.sandbox_state import sandbox_state
from storage.records import Approval, Execution, ExecutionAttempt
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import CHANNEL, MANAGER, ask, run_with_connectors


class FlakyShop:
    """The sandbox shop behind a link that fails the first ``failures`` calls with a transient error."""

    actions: ClassVar[tuple[type[Action], ...]] = (ShopRefund,)

    def __init__(self, shop: SandboxShop, failures: int) -> None:
        self.shop = shop
        self.failures = failures
        self.calls = 0

    async def lookup(self, action: Action, idempotency_key: str) -> dict[str, Any] | None:
        return await self.shop.lookup(action, idempotency_key)

    async def execute(self, action: Action, idempotency_key: str) -> dict[str, Any]:
        self.calls += 1
        if self.calls <= self.failures:
            raise TransientConnectorError("503 Service Unavailable")
        return await self.shop.execute(action, idempotency_key)


@pytest.fixture(autouse=True)
def no_backoff_sleeps() -> Iterator[None]:
    # No backoff sleeps, and the production number of attempts (cap=True keeps the caller's value).
    with stamina.set_testing(True, attempts=100, cap=True):
        yield


async def run_with(aios: Aios, shop: FlakyShop, text: str) -> None:
    context = ConnectorContext(units_of_work=aios.units)
    await run_with_connectors(aios, [shop, SandboxCms(context), SandboxOutbox(context)], text)


async def test_transient_connector_errors_are_retried_and_the_refund_happens_once(aios: Aios) -> None:
    shop = FlakyShop(SandboxShop(ConnectorContext(units_of_work=aios.units)), failures=CONNECTOR_ATTEMPTS - 1)
    await run_with(aios, shop, "refund $30 on order 1003, dented")

    assert shop.calls == CONNECTOR_ATTEMPTS
    refunds = [r for r in (await sandbox_state(aios.units))["refunds"] if r["order_id"] == 1003]
    assert [r["amount"] for r in refunds] == [30.0]
    async with aios.units() as uow:
        attempts = (
            await uow.repo.session.exec(select(ExecutionAttempt).order_by(col(ExecutionAttempt.id)))
        ).all()
    expected = [(n, "execute", "transient") for n in range(1, CONNECTOR_ATTEMPTS)] + [
        (CONNECTOR_ATTEMPTS, "execute", "ok")
    ]
    assert [(a.number, a.kind, a.outcome) for a in attempts] == expected


async def test_a_connector_that_keeps_failing_fails_the_action_cleanly(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    shop = FlakyShop(SandboxShop(ConnectorContext(units_of_work=aios.units)), failures=99)
    await run_with(aios, shop, "refund $30 on order 1003, dented")

    assert shop.calls == CONNECTOR_ATTEMPTS
    assert (await sandbox_state(aios.units))["refunds"] == []
    async with aios.units() as uow:
        execution = (await uow.repo.session.exec(select(Execution))).one()
    assert execution.status == "failed" and "503" in (execution.error or "")
    assert any("failed: 503" in c.params["text"] for c in slack_api.calls_to("chat.postMessage"))


async def test_slack_refusing_the_card_update_does_not_stop_the_approved_refund(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken")
    async with aios.units() as uow:
        approval = (await uow.repo.session.exec(select(Approval))).one()
    assert approval.id is not None
    slack_api.fail_next("chat.update", "message_not_found")

    await aios.process(DecideApproval(approval.id, MANAGER, approve=True, channel=CHANNEL))

    assert [r["order_id"] for r in (await sandbox_state(aios.units))["refunds"]] == [1001]
    assert any("Done: Refund $250.00" in c.params["text"] for c in slack_api.calls_to("chat.postMessage"))


async def test_an_intent_whose_thread_cannot_be_opened_is_marked_failed(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    from storage.records import Intent

    slack_api.fail_next("chat.postMessage", "channel_not_found", times=5)
    intent_id = await aios.accept(
        IncomingIntent(
            source="slash",
            team_id="T",
            channel="C0GONE",
            thread_ts=None,
            user="U0ALICE",
            text="refund $5 on order 1002, late",
        )
    )
    assert intent_id is not None
    await aios.process(HandleIntent(intent_id))

    async with aios.units() as uow:
        intent = await uow.repo.get(Intent, intent_id)
    assert intent is not None and intent.status == "failed"
    assert (await sandbox_state(aios.units))["refunds"] == []
