"""The ack benchmark, run small so that it keeps working as the bot changes (its figures are not checked here:
only that both apps answer every request and each row is printed)."""

from __future__ import annotations

import pytest

from bench.ack_latency import main


def test_the_ack_benchmark_measures_the_bot_beside_a_bare_bolt_app(
    capsys: pytest.CaptureFixture[str],
) -> None:
    main(rate=40, seconds=1, requests=40, concurrency=4, split=True, postgres=None)
    printed = capsys.readouterr().out
    for row in (
        "/aios status, 4 in flight: bare Bolt",
        "/aios status, 4 in flight: aios serve",
        "the bare app",
        "intents at 40/s (open loop): bare Bolt",
        "intents at 40/s (open loop): aios serve",
        "intents at 40/s (open loop): serve --no-work (+ worker, nice 10)",
        "intents at 40/s (open loop): serve --no-work (+ worker, nice idle)",
        "intents planned by the end of the run",
        "ms/req",
    ):
        assert row in printed, printed
