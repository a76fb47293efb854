"""Escalations and compensations counted where they happen (prometheus_client's registry, as /metrics serves it)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from prometheus_client import REGISTRY

from bot.bootstrap import Aios
from connectors.base import ConnectorContext
from connectors.errors import PermanentConnectorError
from connectors.sandbox_cms import SandboxCms
from connectors.sandbox_shop import SandboxShop
from runtime.messages import SweepTimers
from tests.conftest import Clock
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import ask, run_with_connectors, start_aios
from tests.integration.test_compensation import PERMISSIVE, BrokenOutbox


def counter(name: str, **labels: str) -> Callable[[], float]:
    """How much the series grew since this was called."""
    start = REGISTRY.get_sample_value(name, labels) or 0.0
    return lambda: (REGISTRY.get_sample_value(name, labels) or 0.0) - start


async def test_an_approval_that_waits_too_long_is_one_escalation(aios: Aios, clock: Clock) -> None:
    escalations = counter("aios_escalations_total", reason="approval_timeout")
    await ask(aios, "refund order 1005, $400, never arrived")  # rule: escalates after 1h
    clock.advance(minutes=59)
    await aios.process(SweepTimers())
    assert escalations() == 0
    clock.advance(minutes=2)
    await aios.process(SweepTimers())
    await aios.process(SweepTimers())  # a second sweep (or replica) escalates nothing more
    assert escalations() == 1


async def test_a_step_that_cannot_be_undone_counts_as_handed_to_a_person(
    database_url: str, slack_api: FakeSlackApi, clock: Clock, tmp_path: Path
) -> None:
    handed = counter("aios_compensations_total", outcome="handed_to_a_person")
    escalations = counter("aios_escalations_total", reason="cannot_undo")
    refunded = counter("aios_money_moved_usd_total", action="shop.refund")
    refund_ran = counter(
        "aios_actions_executed_total", connector="SandboxShop", action="shop.refund", outcome="succeeded"
    )
    email_failed = counter(
        "aios_actions_executed_total", connector="BrokenOutbox", action="email.send", outcome="failed"
    )
    aios = await start_aios(database_url, slack_api, clock, tmp_path, policy=PERMISSIVE)
    try:
        context = ConnectorContext(units_of_work=aios.units)
        await run_with_connectors(
            aios,
            [
                SandboxShop(context),
                SandboxCms(context),
                BrokenOutbox(PermanentConnectorError("550 no such user")),
            ],
            "refund $5 on order 1002 and tell the customer",
            thread_ts="1.7",
        )
    finally:
        await aios.close()
    assert (refund_ran(), refunded(), email_failed()) == (1, 5.0, 1)
    assert (handed(), escalations()) == (1, 1)
