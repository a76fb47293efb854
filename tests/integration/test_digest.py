"""The scheduled digest: its content from a seeded ledger, once per period, and its schedule."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from slack_sdk.web.async_client import AsyncWebClient
from sqlmodel import select

from bot.bootstrap import Aios
from bot.digest import DigestScheduleError, build_digest, digest_message, digest_trigger, post_digest
from bot.slack_transport import SlackTransport
from runtime.transport import TransportError
from storage.records import ActionStatus, Execution, ExecutionStatus, LlmCall, ProposedAction, Run
from tests.fakes.slack_api import TOKEN, FakeSlackApi
from tests.integration.conftest import ask

DIGEST_CHANNEL = "C0DIGEST"


async def seed_ledger(aios: Aios) -> None:
    """Two completed refunds, one waiting for a manager, a connector failure, a denial, and model calls."""
    await ask(aios, "refund $20 on order 1002, late", thread_ts="1.1")
    await ask(aios, "refund $15 on order 1004, late", thread_ts="1.2")
    await ask(aios, "refund order 1001, $250, broken", thread_ts="1.3")
    await ask(aios, "refund $90 on order 1002, wrong", thread_ts="1.4")  # $28 left: nothing is proposed
    await ask(aios, "refund $5 on order 1005 and tell the customer", thread_ts="1.5")  # the email is denied
    async with aios.units() as uow:
        runs = (await uow.session.exec(select(Run))).all()
        first, second, answered = runs[0], runs[1], runs[3]
        # A refund the shop refused at execution (the agent now checks orders first, so it is seeded).
        assert answered.id is not None
        refused = await uow.add(
            ProposedAction(run_id=answered.id, name="shop.refund", params={}, status=ActionStatus.FAILED)
        )
        assert refused.id is not None
        await uow.add(
            Execution(
                action_id=refused.id,
                idempotency_key="seeded-refusal",
                status=ExecutionStatus.FAILED,
                error="the shop refused the refund",
            )
        )
        for run, cost, outcome in [
            (first, 0.012, "ok"),
            (first, 0.008, "ok"),
            (second, 0.004, "ok"),
            (second, 0.0, "overloaded"),
        ]:
            await uow.add(
                LlmCall(
                    intent_id=run.intent_id,
                    run_id=run.id,
                    agent="returns",
                    requester="U0ALICE",
                    channel="C0SHOP",
                    model="claude-sonnet-4-6",
                    role="agent",
                    input_tokens=900,
                    output_tokens=80,
                    cost_usd=cost,
                    outcome=outcome,
                )
            )
        await uow.add(
            LlmCall(
                intent_id=first.intent_id,
                agent="dispatcher",
                requester="U0ALICE",
                channel="C0SHOP",
                model="claude-haiku-4-5",
                role="dispatch",
                cost_usd=0.001,
                outcome="ok",
            )
        )
        await uow.commit()


async def test_digest_content_from_a_seeded_ledger(aios: Aios) -> None:
    await seed_ledger(aios)
    digest = await build_digest(aios.units, datetime.now(UTC) + timedelta(seconds=1))

    assert [(r.key, r.calls, round(r.cost_usd, 4), r.failures) for r in digest.by_agent] == [
        ("returns", 4, 0.024, 1),
        ("dispatcher", 1, 0.001, 0),
    ]
    assert [(r.key, round(r.cost_usd, 4)) for r in digest.top_runs] == [("1", 0.02), ("2", 0.004)]
    assert (
        digest.completed_runs == 3
    )  # the $20, $15 and $5 refunds (the $5 run's email was denied, not failed)
    assert digest.cost_per_completed_run == pytest.approx(0.025 / 3)
    assert digest.errors == {"llm:overloaded": 1, "connector": 1, "policy_denial": 1}
    [pending] = digest.pending
    assert (pending.action, pending.requester) == ("shop.refund", "U0ALICE")

    text, blocks = digest_message(digest)
    assert "$0.0250 on model calls" in text and "3 errors" in text and "1 approvals waiting" in text
    rendered = str(blocks)
    assert (
        "per completed automation" in rendered
        and "llm:overloaded: 1" in rendered
        and pending.approval_id in rendered
    )


async def test_a_period_is_posted_once_even_when_the_job_fires_twice(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    transport = SlackTransport(AsyncWebClient(token=TOKEN, base_url=slack_api.url))
    fired_at = datetime(2026, 11, 24, 9, 0, 0, 150_000, tzinfo=UTC)
    results = await asyncio.gather(
        post_digest(aios.units, transport, DIGEST_CHANNEL, fired_at),
        post_digest(aios.units, transport, DIGEST_CHANNEL, fired_at + timedelta(seconds=20)),
    )
    assert sorted(results) == [False, True]
    assert [c.params["channel"] for c in slack_api.calls_to("chat.postMessage")] == [DIGEST_CHANNEL]


async def test_a_digest_that_could_not_be_posted_can_be_posted_later(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    transport = SlackTransport(AsyncWebClient(token=TOKEN, base_url=slack_api.url))
    fired_at = datetime(2026, 11, 25, 9, 0, tzinfo=UTC)
    slack_api.fail_next("chat.postMessage", "not_in_channel")
    with pytest.raises(TransportError, match="not_in_channel"):
        await post_digest(aios.units, transport, DIGEST_CHANNEL, fired_at)
    assert await post_digest(aios.units, transport, DIGEST_CHANNEL, fired_at) is True


def test_the_schedule_follows_the_cron_in_utc() -> None:
    now = datetime(2026, 11, 27, 8, 0, tzinfo=UTC)  # a Friday, after 07:30
    next_run = digest_trigger("30 7 * * 1-5").get_next_fire_time(None, now)
    assert next_run == datetime(2026, 11, 30, 7, 30, tzinfo=UTC)  # the next weekday


@pytest.mark.parametrize(
    ("weekdays", "expected_days"),
    [
        ("1-5", {0, 1, 2, 3, 4}),
        ("0", {6}),
        ("7", {6}),
        ("sat,sun", {5, 6}),
        ("*/2", {6, 1, 3, 5}),
        ("*", set(range(7))),
    ],
)
def test_crontab_weekdays_count_from_sunday(weekdays: str, expected_days: set[int]) -> None:
    trigger = digest_trigger(f"0 9 * * {weekdays}")
    start = datetime(2026, 11, 23, 10, 0, tzinfo=UTC)  # a Monday, after 09:00
    fired, moment = set(), start
    for _ in range(len(expected_days)):
        moment = trigger.get_next_fire_time(None, moment + timedelta(seconds=1))
        fired.add(moment.weekday())  # Python: Monday=0
    assert fired == expected_days


def test_a_bad_cron_is_refused_with_an_example() -> None:
    with pytest.raises(DigestScheduleError, match="AIOS_DIGEST_CRON 'every morning' is not a crontab"):
        digest_trigger("every morning")


async def test_budgets_near_their_limit_are_in_the_digest(aios: Aios) -> None:
    from policies.model import Budget
    from storage.records import BudgetAccount

    now = datetime.now(UTC)
    budgets = [
        Budget(id="returns-daily", scope="agent", limit_usd=1.0, warn_at=0.8),
        Budget(id="team-monthly", scope="team", period="month", limit_usd=50.0),
    ]
    async with aios.units() as uow:
        await uow.add(
            BudgetAccount(
                key="a",
                budget_id="returns-daily",
                scope_value="returns",
                period=now.strftime("%Y-%m-%d"),
                limit_usd=1.0,
                spent_usd=0.9,
            )
        )
        await uow.add(
            BudgetAccount(
                key="b",
                budget_id="team-monthly",
                scope_value="T0FAKE",
                period=now.strftime("%Y-%m"),
                limit_usd=50.0,
                spent_usd=5.0,
            )
        )
        await uow.add(
            BudgetAccount(
                key="c",
                budget_id="returns-daily",
                scope_value="returns",
                period="1999-01-01",
                limit_usd=1.0,
                spent_usd=1.0,
            )
        )
        await uow.commit()
    digest = await build_digest(aios.units, now, budgets)
    assert [(b.budget_id, b.scope_value, round(b.share, 2)) for b in digest.budgets_near_limit] == [
        ("returns-daily", "returns", 0.9)
    ]
    assert "`returns-daily` (returns, " in str(digest_message(digest)[1])
