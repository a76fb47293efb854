"""Ack latency of `aios serve` beside its anchor, a bare Bolt app, measured in the same run.

Both get the very same signed `/aios` requests from a client on loopback:

- `/aios status` (read-only; its answer is the ack, read in one statement or given again for up to a second
  until this process commits a change) with a fixed number in flight (closed loop): throughput and latency,
  the bot against the bare Bolt app (`bench.bare_bolt`: Bolt's aiohttp adapter, `process_before_response=True`,
  a listener that acks at once with a line of text), the two taking turns in ten rounds.
- intents sent at a fixed offered rate (open loop: each request leaves at its scheduled time, whatever the
  answers before it, and its latency counts from that time), each stored before its ack while earlier ones are
  planned: by `aios serve` alone, and by `aios serve --no-work` beside an `aios worker` (with `--split`), the
  worker at its default niceness, then at `AIOS_WORKER_NICE=idle`.

The bot, its worker, the anchor and the fake Slack Web API each run in their own process; the client runs in
this one, sending requests built and signed beforehand over keep-alive connections (see `Client`), and each row
says the CPU a request cost the server's processes and the client. Run from the repository root:

    .venv/bin/python -m bench.ack_latency [--rate 500] [--seconds 4] [--concurrency 8] [--requests 2000]
        [--split] [--postgres postgresql+asyncpg://…] [--status-only]

With --postgres, each run has a database of its own on that server, created empty and dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import httptools
from sqlalchemy import text
from sqlalchemy.engine import make_url

from bot.settings import Settings
from storage.engine import create_engine, normalise_database_url
from tests.fakes.aios_process import aios_env, free_port, running_aios_serve, running_aios_worker
from tests.fakes.slack_payloads import sign, slash_command

INTENT = "draft a post titled Bench"
STATUS_ROUNDS = 10  # the status requests of each app are sent in this many rounds, the apps taking turns


@dataclass(frozen=True)
class Figures:
    latencies: list[float]  # seconds
    elapsed: float
    cpu: float = 0.0  # seconds of CPU the server's processes used meanwhile
    client_cpu: float = 0.0  # and the client (this process)

    @property
    def cpu_ms_per_request(self) -> float:
        return self.cpu * 1000 / len(self.latencies)

    @property
    def client_cpu_ms_per_request(self) -> float:
        return self.client_cpu * 1000 / len(self.latencies)

    @property
    def rate(self) -> float:
        return len(self.latencies) / self.elapsed

    def quantile_ms(self, q: int) -> float:
        return statistics.quantiles([x * 1000 for x in self.latencies], n=100)[q - 1]


class _Connection(asyncio.Protocol):
    """One keep-alive HTTP/1.1 connection carrying one request at a time, its answer read with httptools' C
    parser. The client shares the machine's two cores with the servers it measures, so it does as little as it
    can: requests built and signed beforehand, no task or coroutine per request, a callback when an answer is
    whole."""

    def __init__(self, answered: Callable[[_Connection, int], None]) -> None:
        self._answered = answered
        self._transport: asyncio.Transport | None = None
        self._parser = httptools.HttpResponseParser(self)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def data_received(self, data: bytes) -> None:
        self._parser.feed_data(data)

    def on_message_complete(self) -> None:  # httptools' callback: the whole answer, body included, is read
        self._answered(self, self._parser.get_status_code())

    def connection_lost(self, exc: Exception | None) -> None:
        self._answered(self, 0)  # no answer will come: the run fails, unless it is over and this is its close

    def send(self, request: bytes) -> None:
        assert self._transport is not None
        self._transport.write(request)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()


class Client:
    """Signed `/aios` requests to one server over keep-alive connections: an idle connection is reused, and a
    new one opened only when every connection is waiting for an answer (as aiohttp's pool without a limit).
    ``answered`` is called with each request's send time once its whole answer is read."""

    def __init__(self, url: str, answered: Callable[[float], None]) -> None:
        address = urlsplit(url)
        assert address.hostname is not None and address.port is not None
        self._host, self._port = address.hostname, address.port
        self._answered = answered
        self._idle: list[_Connection] = []
        self._sent: dict[_Connection, float] = {}  # each busy connection, and when its request was due
        self.failed: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._opening: set[asyncio.Task[None]] = set()

    def request(self, text: str) -> bytes:
        """The bytes of one signed request, built ahead of the moment it is sent."""
        body, content_type = slash_command(text, user="U0BENCH")
        headers = {
            "Host": f"{self._host}:{self._port}",
            "Content-Type": content_type,
            "Content-Length": str(len(body.encode())),
            **sign(body),
        }
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        return f"POST /slack/events HTTP/1.1\r\n{head}\r\n{body}".encode()

    def send(self, request: bytes, due: float) -> None:
        """Send ``request`` now, its latency counted from ``due``."""
        if self._idle:
            connection = self._idle.pop()
            self._sent[connection] = due
            connection.send(request)
        else:
            opening = asyncio.create_task(self._open(request, due))
            self._opening.add(opening)
            opening.add_done_callback(self._opening.discard)

    async def _open(self, request: bytes, due: float) -> None:
        try:
            _, connection = await asyncio.get_running_loop().create_connection(
                lambda: _Connection(self._on_answer), self._host, self._port
            )
        except OSError as exc:
            if not self.failed.done():
                self.failed.set_exception(exc)
            return
        self._sent[connection] = due
        connection.send(request)

    def _on_answer(self, connection: _Connection, status: int) -> None:
        due = self._sent.pop(connection, None)
        if due is None:  # an idle connection closed: not to be used again
            if connection in self._idle:
                self._idle.remove(connection)
            return
        if status != 200:
            if not self.failed.done():
                self.failed.set_exception(AssertionError(f"answered {status or 'nothing'}"))
            return
        self._idle.append(connection)
        self._answered(due)

    def close(self) -> None:
        # Connections still being opened (a run that failed early) would otherwise send after the figures.
        for opening in self._opening:
            opening.cancel()
        for connection in [*self._idle, *self._sent]:
            connection.close()
        self._idle.clear()
        self._sent.clear()


async def closed_loop(url: str, text: str, requests: int, concurrency: int) -> Figures:
    latencies: list[float] = []
    done = asyncio.get_running_loop().create_future()

    def answered(sent: float) -> None:
        latencies.append(time.perf_counter() - sent)
        if pending:
            client.send(pending.pop(), time.perf_counter())
        elif len(latencies) == requests and not done.done():
            done.set_result(None)

    client = Client(url, answered)
    pending = [client.request(text) for _ in range(requests)]
    try:
        started, cpu = time.perf_counter(), time.process_time()
        for _ in range(min(concurrency, requests)):
            client.send(pending.pop(), time.perf_counter())
        return await _figures(client, done, latencies, started, cpu)
    finally:
        client.close()


async def _figures(
    client: Client, done: asyncio.Future[None], latencies: list[float], started: float, cpu: float
) -> Figures:
    """Once every answer is in (or the first failure, raised): the figures since ``started`` (wall) and ``cpu``."""
    await asyncio.wait([done, client.failed], return_when=asyncio.FIRST_COMPLETED)
    if client.failed.done():
        client.failed.result()
    return Figures(latencies, time.perf_counter() - started, client_cpu=time.process_time() - cpu)


async def open_loop(url: str, text: str, rate: float, seconds: float) -> Figures:
    """Requests leave at ``rate`` per second whatever the answers; latency counts from each one's scheduled
    time, so a server that falls behind is charged for the queue it builds."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    done = loop.create_future()

    def answered(due: float) -> None:
        latencies.append(time.perf_counter() - due)
        if len(latencies) == len(requests) and not done.done():
            done.set_result(None)

    client = Client(url, answered)
    requests = [client.request(text) for _ in range(int(rate * seconds))]
    try:
        started, cpu = time.perf_counter(), time.process_time()
        for n, request in enumerate(requests):
            due = started + n / rate
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            client.send(request, due)
        return await _figures(client, done, latencies, started, cpu)
    finally:
        client.close()


@contextmanager
def running_bare_bolt(slack_api_url: str, timeout: float = 60) -> Iterator[Server]:
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "bench.bare_bolt", "--port", str(port), "--slack-api-url", slack_api_url]
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                    break
            except OSError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("the bare Bolt app did not start") from None
                time.sleep(0.1)
        yield Server(url, [process.pid])
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def running_fake_slack() -> Iterator[str]:
    """The fake Slack Web API in a process of its own, so that answering the bot's posts does not take the
    client's CPU."""
    code = (
        "import sys, time\n"
        "from tests.fakes.slack_api import FakeSlackApi\n"
        "with FakeSlackApi() as slack:\n"
        "    print(slack.url, flush=True)\n"
        "    sys.stdin.read()\n"
    )
    process = subprocess.Popen(
        [sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None and process.stdin is not None
    try:
        yield process.stdout.readline().strip()
    finally:
        process.stdin.close()
        process.wait(10)


async def intents_so_far(database_url: str, since: int = 0) -> tuple[int, int, int]:
    """The newest intent's id, and of the intents after ``since``: how many are stored and how many planned (no
    longer `received`), in a SQLite or PostgreSQL store."""
    engine = create_engine(database_url)
    try:
        async with engine.connect() as connection:
            newest, total, waiting = (
                await connection.execute(
                    text(
                        "SELECT coalesce(max(id), 0), count(*), "
                        "coalesce(sum(CASE WHEN status = 'received' THEN 1 ELSE 0 END), 0) "
                        "FROM intent WHERE id > :since"
                    ),
                    {"since": since},
                )
            ).one()
    finally:
        await engine.dispose()
    return max(int(newest), since), int(total), int(total) - int(waiting)


def cpu_seconds(pids: list[int]) -> float:
    """User and system CPU time the processes have used so far (Linux), so that the cost of an ack can be told
    apart from the time it waited for a CPU on a busy machine."""
    total = 0
    for pid in pids:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


async def costed(pids: list[int], measuring: Awaitable[Figures]) -> Figures:
    before = cpu_seconds(pids)
    figures = await measuring
    return replace(figures, cpu=cpu_seconds(pids) - before)


def row(name: str, figures: Figures) -> str:
    return (
        f"{name:<48} n={len(figures.latencies):<5} p50={figures.quantile_ms(50):7.2f} ms  "
        f"p99={figures.quantile_ms(99):7.2f} ms  max={max(figures.latencies) * 1000:7.2f} ms  "
        f"{figures.rate:6.0f} req/s  CPU {figures.cpu_ms_per_request:5.2f} ms/req  "
        f"client CPU {figures.client_cpu_ms_per_request:5.2f} ms/req"
    )


@contextmanager
def fresh_postgres(url: str) -> Iterator[str]:
    """A new database on the PostgreSQL server that ``url`` names, dropped afterwards: each run starts from an
    empty store, as it does on SQLite, rather than behind the intents earlier runs left waiting for a worker."""
    server = make_url(normalise_database_url(url))
    name = f"aios_bench_{uuid.uuid4().hex[:12]}"
    admin = server.set(drivername="postgresql", database=server.database or "postgres")

    async def run(statement: str) -> None:
        connection = await asyncpg.connect(admin.render_as_string(hide_password=False), timeout=10)
        try:
            await connection.execute(statement)
        finally:
            await connection.close()

    asyncio.run(run(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@dataclass(frozen=True)
class Server:
    url: str
    pids: list[int]  # the processes whose CPU it uses


def combined(rounds: list[Figures]) -> Figures:
    return Figures(
        [latency for figures in rounds for latency in figures.latencies],
        sum(figures.elapsed for figures in rounds),
        sum(figures.cpu for figures in rounds),
        sum(figures.client_cpu for figures in rounds),
    )


async def status_side_by_side(bare: Server, bot: Server, requests: int, concurrency: int) -> None:
    for server in (bare, bot):
        await closed_loop(server.url, "status", 50, 1)  # warm up: the lazy auth.test, connection pools
    # In alternating rounds: a change in the machine's load (a shared machine's other work) weighs on both apps
    # alike, instead of on whichever was measured while it lasted.
    anchor_rounds, our_rounds = [], []
    for _ in range(STATUS_ROUNDS):
        size = max(1, requests // STATUS_ROUNDS)
        anchor_rounds.append(await costed(bare.pids, closed_loop(bare.url, "status", size, concurrency)))
        our_rounds.append(await costed(bot.pids, closed_loop(bot.url, "status", size, concurrency)))
    anchor, ours = combined(anchor_rounds), combined(our_rounds)
    print(row(f"/aios status, {concurrency} in flight: bare Bolt", anchor))
    print(row(f"/aios status, {concurrency} in flight: aios serve", ours))
    print(f"{'':<44} throughput {ours.rate / anchor.rate:.2f}x the bare app")


async def intents_at_rate(
    name: str, server: Server, rate: float, seconds: float, database_url: str | None = None
) -> None:
    """``database_url``: the server's store, to say how many of the intents it stored meanwhile were planned by
    the end of the run."""
    await closed_loop(server.url, INTENT, 20, 1)
    since = (await intents_so_far(database_url))[0] if database_url else 0
    figures = await costed(server.pids, open_loop(server.url, INTENT, rate, seconds))
    print(row(f"intents at {rate:.0f}/s (open loop): {name}", figures))
    if database_url:
        _, total, done = await intents_so_far(database_url, since)
        print(f"{'':<44} {done} of {total} intents planned by the end of the run")


def main(
    rate: float,
    seconds: float,
    requests: int,
    concurrency: int,
    split: bool,
    postgres: str | None,
    status_only: bool = False,
) -> None:
    with ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        slack = stack.enter_context(running_fake_slack())
        bare = stack.enter_context(running_bare_bolt(slack))
        database = (
            stack.enter_context(fresh_postgres(postgres))
            if postgres
            else f"sqlite+aiosqlite:///{workdir / 'bench.db'}"
        )
        with running_aios_serve(aios_env(database, slack), timeout=120) as serve:
            bot = Server(serve.url, [serve.process.pid])
            asyncio.run(status_side_by_side(bare, bot, requests, concurrency))
            if status_only:
                return
            asyncio.run(intents_at_rate("bare Bolt", bare, rate, seconds))
            asyncio.run(intents_at_rate("aios serve", bot, rate, seconds, database))
        # The worker at its default niceness, then on CPU time its neighbours leave (AIOS_WORKER_NICE=idle).
        for nice in (str(Settings.model_fields["worker_nice"].default), "idle") if split else ():
            split_database = (
                stack.enter_context(fresh_postgres(postgres))
                if postgres
                else f"sqlite+aiosqlite:///{workdir / f'split-{nice}.db'}"
            )
            env = aios_env(split_database, slack) | {"AIOS_WORKER_NICE": nice}
            with (
                running_aios_serve(env, timeout=120, work=False) as serve,
                running_aios_worker(env, timeout=120),
            ):
                # The CPU column counts the front door alone: the worker's planning is not the ack's cost.
                front_door = Server(serve.url, [serve.process.pid])
                name = f"serve --no-work (+ worker, nice {nice})"
                asyncio.run(intents_at_rate(name, front_door, rate, seconds, split_database))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rate", type=float, default=500, help="intents offered per second")
    parser.add_argument("--seconds", type=float, default=4, help="how long intents are offered")
    parser.add_argument("--requests", type=int, default=2000, help="status requests per app")
    parser.add_argument("--concurrency", type=int, default=8, help="status requests in flight")
    parser.add_argument("--split", action="store_true", help="also `aios serve --no-work` + `aios worker`")
    parser.add_argument(
        "--postgres",
        help="a PostgreSQL server (URL) to make each run's database on, instead of a SQLite file",
    )
    parser.add_argument("--status-only", action="store_true", help="only `/aios status`, no intents")
    args = parser.parse_args()
    main(
        args.rate, args.seconds, args.requests, args.concurrency, args.split, args.postgres, args.status_only
    )
