"""The transient classification every HTTP connector shares."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from connectors.errors import TransientConnectorError
from connectors.http_errors import raise_if_transient, reach, retry_after


def test_retry_after_reads_seconds_and_http_dates_and_ignores_nonsense() -> None:
    assert retry_after({"Retry-After": "7"}) == 7.0
    in_a_minute = format_datetime(datetime.now(UTC) + timedelta(seconds=60), usegmt=True)
    assert 55 <= (retry_after({"Retry-After": in_a_minute}) or 0) <= 60
    assert retry_after({"Retry-After": "Wed, 21 Oct 2015 07:28:00 GMT"}) == 0.0  # already past
    assert retry_after({"Retry-After": "-3"}) == 0.0
    assert retry_after({"Retry-After": "soon"}) is None
    assert retry_after({}) is None and retry_after(None) is None


@pytest.mark.parametrize("status", [429, 500, 503])
def test_rate_limits_and_server_errors_are_transient_with_the_wait(status: int) -> None:
    response = httpx.Response(status, headers={"Retry-After": "2"})
    with pytest.raises(TransientConnectorError, match="busy") as raised:
        raise_if_transient(response, "busy")
    assert raised.value.retry_after == 2.0


@pytest.mark.parametrize("status", [200, 400, 404])
def test_other_answers_are_left_to_the_connector(status: int) -> None:
    raise_if_transient(httpx.Response(status), "busy")


async def test_a_failed_connection_never_repeats_the_url_it_held() -> None:
    async def refused() -> httpx.Response:
        raise httpx.ConnectError("cannot connect to https://user:hunter2@example.com")

    with pytest.raises(TransientConnectorError) as raised:
        await reach(refused(), "the shop", hint="check AIOS_SHOP_API_URL")
    assert str(raised.value) == "the shop could not be reached (ConnectError); check AIOS_SHOP_API_URL"
