"""The digest's "once per period" is keyed by the scheduled firing, not by the moment a replica's job ran."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.digest import digest_period
from tests.conftest import Clock
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import start_aios

NINE = datetime(2026, 11, 24, 9, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    "fired_at",
    [
        NINE,
        NINE + timedelta(seconds=59, microseconds=999),
        NINE + timedelta(minutes=5),
        NINE + timedelta(hours=23),
    ],
)
def test_every_firing_of_a_day_names_that_days_period(fired_at: datetime) -> None:
    assert digest_period("0 9 * * *", fired_at) == NINE


def test_periods_of_other_schedules() -> None:
    assert digest_period("0 9,17 * * *", NINE + timedelta(hours=8, minutes=1)) == NINE + timedelta(hours=8)
    assert digest_period("*/15 * * * *", NINE + timedelta(minutes=44)) == NINE + timedelta(minutes=30)
    monday = datetime(2026, 11, 23, 7, 30, tzinfo=UTC)
    assert digest_period("30 7 * * 1", monday + timedelta(days=6)) == monday


@pytest.mark.parametrize("second_firing", [timedelta(seconds=59), timedelta(minutes=5)])
async def test_two_replicas_firing_in_the_same_period_post_once(
    database_url: str, slack_api: FakeSlackApi, tmp_path: Path, second_firing: timedelta
) -> None:
    first_clock, second_clock = Clock(), Clock()
    first_clock.now, second_clock.now = NINE, NINE + second_firing
    settings = {"AIOS_DIGEST_CHANNEL": "C0DIGEST", "AIOS_DIGEST_CRON": "0 9 * * *"}
    first = await start_aios(database_url, slack_api, first_clock, tmp_path, **settings)
    second = await start_aios(database_url, slack_api, second_clock, tmp_path, **settings)
    try:
        await first.post_digest()
        await second.post_digest()
        assert len(slack_api.calls_to("chat.postMessage")) == 1
        second_clock.advance(days=1)  # the next day's period is a new one
        await second.post_digest()
        assert len(slack_api.calls_to("chat.postMessage")) == 2
    finally:
        await first.close()
        await second.close()
