"""A real HTTP shop API failing 20 % of refund calls (429, 5xx before and after doing the work, responses that
never arrive): every approved refund still happens exactly once, thanks to retries and the idempotency key."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import stamina
from sqlmodel import col, select

from connectors.errors import PermanentConnectorError, TransientConnectorError
from runtime.handlers.execution import _retry_after
from storage.records import Execution, ExecutionAttempt
from tests.conftest import Clock
from tests.fakes.shop_api import FlakyShopApi
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import ask, start_aios

REFUNDS = 40


@pytest.fixture
def shop_api() -> Iterator[FlakyShopApi]:
    with FlakyShopApi(fault_rate=0.2, seed=7, slow_seconds=1.0) as api:
        yield api


async def test_every_refund_completes_once_against_a_flaky_shop(
    database_url: str, slack_api: FakeSlackApi, shop_api: FlakyShopApi, clock: Clock, tmp_path: Path
) -> None:
    aios = await start_aios(
        database_url,
        slack_api,
        clock,
        tmp_path,
        AIOS_SHOP_API_URL=shop_api.url,
        AIOS_CONNECTOR_TIMEOUT_SECONDS="0.3",
    )
    try:
        with stamina.set_testing(True, attempts=100, cap=True):  # no backoff sleeps; the real attempt limit
            for n in range(REFUNDS):
                await ask(
                    aios, f"refund $1 on order {1001 + n % 5}, goodwill {n}", thread_ts=f"1700003000.{n:06d}"
                )
        async with aios.units() as uow:
            executions = (await uow.session.exec(select(Execution))).all()
            attempts = (
                await uow.session.exec(select(ExecutionAttempt).order_by(col(ExecutionAttempt.id)))
            ).all()
    finally:
        await aios.close()

    assert [e.status for e in executions] == ["succeeded"] * REFUNDS
    assert len(shop_api.refunds) == REFUNDS  # one per idempotency key: no refund was made twice
    assert {e.idempotency_key for e in executions} == set(shop_api.refunds)
    assert sum(shop_api.faults.values()) >= REFUNDS * 0.1, shop_api.faults
    assert all(shop_api.faults.values()), shop_api.faults  # every kind of fault happened
    retried = len(attempts) - REFUNDS
    assert retried == sum(shop_api.faults.values())  # every fault cost exactly one recorded attempt
    print(
        f"\n{REFUNDS} refunds, {shop_api.refund_requests} requests, faults {shop_api.faults}, "
        f"{len(attempts)} attempts recorded, {len(shop_api.refunds)} refunds made"
    )


def test_retry_waits_follow_the_connector() -> None:
    assert _retry_after(TransientConnectorError("429", retry_after=2.5)) == 2.5
    assert _retry_after(TransientConnectorError("429", retry_after=9999)) == 30.0
    assert _retry_after(TransientConnectorError("503")) is True
    assert _retry_after(TimeoutError()) is True
    assert _retry_after(PermanentConnectorError("400")) is False
