"""What happens when the outside world misbehaves: a flaky connector, Slack refusing a call."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any, ClassVar

import pytest
import stamina
from sqlmodel import col, select

from bot.bootstrap import Aios
from connectors.actions import Action, ShopRefund
from connectors.base import Connector, ConnectorContext
from connectors.errors import TransientConnectorError
from connectors.sandbox_cms import SandboxCms
from connectors.sandbox_outbox import SandboxOutbox
from connectors.sandbox_shop import SandboxShop
from connectors.sandbox_state import sandbox_state
from runtime.handlers import CONNECTOR_ATTEMPTS
from runtime.intake import IncomingIntent
from runtime.messagebus import MessageBus
from runtime.messages import DecideApproval, ExecuteAction, HandleIntent, Recover
from storage.records import ActionStatus, Approval, Execution, ExecutionAttempt, ProposedAction, Run
from tests.conftest import Clock
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import CHANNEL, MANAGER, ask, bus_with_connectors, run_with_connectors


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


async def run_with(aios: Aios, shop: Connector, text: str) -> MessageBus:
    context = ConnectorContext(units_of_work=aios.units)
    return await run_with_connectors(aios, [shop, SandboxCms(context), SandboxOutbox(context)], text)


async def test_transient_connector_errors_are_retried_and_the_refund_happens_once(aios: Aios) -> None:
    shop = FlakyShop(SandboxShop(ConnectorContext(units_of_work=aios.units)), failures=CONNECTOR_ATTEMPTS - 1)
    await run_with(aios, shop, "refund $30 on order 1003, dented")

    assert shop.calls == CONNECTOR_ATTEMPTS
    refunds = [r for r in (await sandbox_state(aios.units))["refunds"] if r["order_id"] == 1003]
    assert [r["amount"] for r in refunds] == [30.0]
    async with aios.units() as uow:
        attempts = (await uow.session.exec(select(ExecutionAttempt).order_by(col(ExecutionAttempt.id)))).all()
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
        execution = (await uow.session.exec(select(Execution))).one()
    assert execution.status == "failed" and "503" in (execution.error or "")
    [told] = [
        c.params["text"] for c in slack_api.calls_to("chat.postMessage") if "failed: 503" in c.params["text"]
    ]
    # After retries of a transient error nobody knows whether the work landed; the thread is not told otherwise.
    assert "may still have taken effect" in told and "Nothing was changed" not in told


async def test_slack_refusing_the_card_update_does_not_stop_the_approved_refund(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    await ask(aios, "refund order 1001, $250, arrived broken")
    async with aios.units() as uow:
        approval = (await uow.session.exec(select(Approval))).one()
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
        intent = await uow.get(Intent, intent_id)
    assert intent is not None and intent.status == "failed"
    assert (await sandbox_state(aios.units))["refunds"] == []


class BuggyShop:
    """A shop connector with a bug: ``execute`` (or ``lookup``) raises an exception no connector should."""

    actions: ClassVar[tuple[type[Action], ...]] = (ShopRefund,)

    def __init__(self, error: Exception, *, in_lookup: bool = False) -> None:
        self.error = error
        self.in_lookup = in_lookup
        self.calls = 0

    async def lookup(self, action: Action, idempotency_key: str) -> dict[str, Any] | None:
        self.calls += 1
        if self.in_lookup:
            raise self.error
        return None

    async def execute(self, action: Action, idempotency_key: str) -> dict[str, Any]:
        self.calls += 1
        raise self.error


def replies(slack_api: FakeSlackApi) -> list[str]:
    return [c.params["text"] for c in slack_api.calls_to("chat.postMessage")]


async def the_execution(aios: Aios) -> Execution:
    async with aios.units() as uow:
        return (await uow.session.exec(select(Execution))).one()


async def test_a_bug_in_a_connector_fails_the_action_once_in_plain_words_and_counts_as_an_error(
    aios: Aios, slack_api: FakeSlackApi, clock: Clock
) -> None:
    shop = BuggyShop(RuntimeError("pool exhausted <object at 0x7f>"))
    bus = await run_with(aios, shop, "refund $30 on order 1003, dented")

    assert shop.calls == 1  # a bug is not retried
    execution = await the_execution(aios)
    assert execution.status == "failed" and execution.error == "RuntimeError: pool exhausted <object at 0x7f>"
    async with aios.units() as uow:
        attempts = (await uow.session.exec(select(ExecutionAttempt))).all()
        [action] = (await uow.session.exec(select(ProposedAction))).all()
        [run] = (await uow.session.exec(select(Run))).all()
        errors = await uow.budgets.error_counts(clock() - timedelta(hours=1), clock() + timedelta(hours=1))
    assert [(a.number, a.kind, a.outcome, a.error) for a in attempts] == [
        (1, "execute", "error", "RuntimeError: pool exhausted <object at 0x7f>")
    ]
    assert (action.status, run.status) == ("failed", "failed")
    assert errors["connector"] == 1
    [failure] = [text for text in replies(slack_api) if "failed" in text]
    assert "shop.refund connector stopped with an unexpected error" in failure
    assert "RuntimeError" not in failure and "0x7f" not in failure and "Traceback" not in failure

    # Nothing is left in flight for the next start to try again.
    said = len(replies(slack_api))
    await bus.handle(Recover(grace_seconds=0))
    assert shop.calls == 1 and len(replies(slack_api)) == said
    assert (await the_execution(aios)).status == "failed"


@pytest.mark.parametrize("error", [KeyError("refund_id"), RuntimeError("socket closed")], ids=repr)
async def test_a_bug_while_reconciling_settles_the_execution_as_failed(
    aios: Aios, slack_api: FakeSlackApi, error: Exception
) -> None:
    await ask(aios, "refund $30 on order 1003, dented")
    # As a crash after the connector call would leave it: the execution in flight, the action approved, and
    # no live process working on it.
    async with aios.units() as uow:
        execution = (await uow.session.exec(select(Execution))).one()
        execution.status = "started"
        execution.owner = None
        uow.session.add(execution)
        await uow.runs.set_action_status(execution.action_id, ActionStatus.APPROVED)
        await uow.commit()
    shop = BuggyShop(error, in_lookup=True)
    bus = bus_with_connectors(aios, [shop, SandboxOutbox(ConnectorContext(units_of_work=aios.units))])

    await bus.handle(Recover(grace_seconds=0))
    await bus.handle(Recover(grace_seconds=0))

    assert shop.calls == 1
    settled = await the_execution(aios)
    assert settled.status == "failed" and type(error).__name__ in (settled.error or "")
    assert len([text for text in replies(slack_api) if "unexpected error" in text]) == 1


async def unreadable_approved_action(aios: Aios) -> ProposedAction:
    """An approved refund whose stored parameters no longer validate (say, approved before a stricter model)."""
    await ask(aios, "refund order 1001, $250, arrived broken")
    async with aios.units() as uow:
        proposed = (await uow.session.exec(select(ProposedAction))).one()
        proposed.params = {**proposed.params, "amount": -250}
        uow.session.add(proposed)
        await uow.runs.set_action_status(proposed.id or 0, ActionStatus.APPROVED)
        await uow.commit()
    return proposed


async def test_an_approved_action_whose_stored_parameters_do_not_validate_fails_once(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    proposed = await unreadable_approved_action(aios)
    assert proposed.id is not None

    await aios.process(ExecuteAction(proposed.id))
    await aios.process(Recover(grace_seconds=0))

    async with aios.units() as uow:
        stored = await uow.get(ProposedAction, proposed.id)
    assert stored is not None and stored.status == "failed"
    assert len([text for text in replies(slack_api) if "shop.refund failed" in text]) == 1
    assert (await sandbox_state(aios.units))["refunds"] == []


async def test_an_execution_in_flight_whose_stored_parameters_do_not_validate_is_settled_as_failed(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    proposed = await unreadable_approved_action(aios)
    assert proposed.id is not None
    async with aios.units() as uow:
        await uow.add(Execution(action_id=proposed.id, idempotency_key="k" * 64, status="started", result={}))
        await uow.commit()

    await aios.process(Recover(grace_seconds=0))
    await aios.process(Recover(grace_seconds=0))

    execution = await the_execution(aios)
    assert execution.status == "failed" and "amount" in (execution.error or "")
    assert len([text for text in replies(slack_api) if "shop.refund failed" in text]) == 1
    assert (await sandbox_state(aios.units))["refunds"] == []
