"""Ack latency of `aios serve` for signed slash commands, measured from a client on loopback.

Starts the real server against the local fake Slack Web API, then sends signed `/aios` requests:
read-only subcommands (`status`) and intents (persisted before the ack, then planned in the background).
Prints percentiles and throughput (for the burst rows, requests answered per second of wall time).
The client and the fake Slack API share this process, so the figures include their cost too.
Run from the repository root:

    .venv/bin/python -m bench.ack_latency [--requests 400] [--concurrency 8]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import aiohttp

from tests.fakes.aios_process import aios_env, running_aios_serve
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.slack_payloads import sign, slash_command


async def measure(
    url: str, text: str, requests: int, concurrency: int, gap: float = 0.0
) -> tuple[list[float], float]:
    latencies: list[float] = []
    gate = asyncio.Semaphore(concurrency)

    async def one(session: aiohttp.ClientSession) -> None:
        body, content_type = slash_command(text, user="U0BENCH")
        headers = {"Content-Type": content_type, **sign(body)}
        async with gate:
            started = time.perf_counter()
            async with session.post(f"{url}/slack/events", data=body, headers=headers) as response:
                await response.read()
                assert response.status == 200, response.status
            latencies.append(time.perf_counter() - started)
            if gap:
                await asyncio.sleep(gap)

    async with aiohttp.ClientSession() as session:
        started = time.perf_counter()
        await asyncio.gather(*(one(session) for _ in range(requests)))
        elapsed = time.perf_counter() - started
    return latencies, elapsed


def report(name: str, latencies: list[float], elapsed: float) -> None:
    ms = sorted(x * 1000 for x in latencies)
    q = statistics.quantiles(ms, n=100)
    print(
        f"{name:<28} n={len(ms):<5} p50={q[49]:7.2f} ms  p90={q[89]:7.2f} ms  p99={q[98]:7.2f} ms  "
        f"max={ms[-1]:7.2f} ms  {len(ms) / elapsed:7.0f} req/s"
    )


def main(requests: int, concurrency: int) -> None:
    with tempfile.TemporaryDirectory() as workdir, FakeSlackApi() as slack:
        env = aios_env(f"sqlite+aiosqlite:///{Path(workdir) / 'bench.db'}", slack.url)
        with running_aios_serve(env) as serve:
            asyncio.run(run_scenarios(serve.url, requests, concurrency))


async def run_scenarios(url: str, requests: int, concurrency: int) -> None:
    await measure(url, "status", 20, 1)  # warm up: the lazy auth.test, connection pools
    report("read-only (/aios status)", *await measure(url, "status", requests, concurrency))
    intent = "draft a post titled Bench"
    # One at a time with idle gaps: the ack alone. In a burst: the ack while earlier intents are
    # being planned and answered in the background of the same process.
    report("intent, one at a time", *await measure(url, intent, 30, 1, gap=0.2))
    report("intent, burst", *await measure(url, intent, requests // 4, concurrency))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    main(args.requests, args.concurrency)
