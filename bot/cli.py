"""The `aios` command line (Typer + Rich)."""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Annotated, Any, TypeVar

import structlog
import typer
from aiohttp import web
from rich.console import Console
from sqlalchemy.exc import DBAPIError, OperationalError

from agents.pricing import PriceError
from bot.bootstrap import Aios, bootstrap
from bot.console import CONSOLE_TEAM, ConsoleTransport, render, run_chat
from bot.cost import PERIODS, cost_report, cost_tables
from bot.demo import DemoFailedError, run_demo
from bot.digest import DigestScheduleError, build_digest, digest_message, post_digest
from bot.observability import configure_logging
from bot.queries import why as explain_why
from bot.scheduler import build_scheduler
from bot.settings import MissingSettingError, Settings
from bot.slack_app import build_slack_app
from bot.slack_transport import SlackTransport, build_slack_client
from bot.socket_mode import SocketModeStartError, run_socket_mode
from bot.web import build_web_app
from connectors.sandbox_state import sandbox_state
from policies.errors import PolicyError
from policies.model import parse_duration
from storage.engine import DatabaseUrlError, create_engine
from storage.memory import MemoryStoreError
from storage.migrate import upgrade_to_head

app = typer.Typer(
    help="AIOS: a chat-ops bot whose agents propose actions that a policy gates.",
    no_args_is_help=True,
    add_completion=False,
)
sandbox_app = typer.Typer(help="The sandbox shop, CMS and outbox.", no_args_is_help=True)
db_app = typer.Typer(help="The SQL store.", no_args_is_help=True)
app.add_typer(sandbox_app, name="sandbox")
memory_app = typer.Typer(help="The team's long-term memory.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(memory_app, name="memory")

TeamOption = Annotated[
    str, typer.Option("--team", help="The Slack team id (tenant); the console's by default.")
]

# soft_wrap: long lines stay whole, so messages can be copied and searched.
out = Console(soft_wrap=True)
err = Console(stderr=True, soft_wrap=True)
log = structlog.get_logger(__name__)

T = TypeVar("T")

# Errors a user can fix; each message says what is wrong and how to fix it.
USER_ERRORS = (
    MemoryStoreError,
    PolicyError,
    DatabaseUrlError,
    MissingSettingError,
    DemoFailedError,
    DigestScheduleError,
    PriceError,
    SocketModeStartError,
)


def _run(work: Callable[[], Awaitable[T]]) -> T:
    try:
        return asyncio.run(work())  # type: ignore[arg-type]
    except USER_ERRORS as exc:
        err.print(f"[red]error:[/] {exc}", highlight=False)
        raise typer.Exit(2) from None
    except (OperationalError, DBAPIError, OSError) as exc:
        err.print(
            f"[red]error:[/] cannot use the database ({type(exc).__name__}: {str(exc).splitlines()[0]}). "
            "Check AIOS_DATABASE_URL and that the database is reachable.",
            highlight=False,
        )
        raise typer.Exit(2) from None


async def _with_store(work: Callable[[Aios], Awaitable[T]]) -> T:
    """Commands that only read or maintain the store: no Slack, nothing is posted."""
    aios = await bootstrap(Settings(), ConsoleTransport(err))
    try:
        return await work(aios)
    finally:
        await aios.close()


@app.command()
def demo() -> None:
    """Play the e-commerce and content scenario end to end: no network, no keys."""
    configure_logging(json=False, level=40)
    _run(lambda: run_demo(out))


@app.command()
def chat(
    user: Annotated[str, typer.Option("--as", help="The Slack user id you speak as.")] = "U0ALICE",
) -> None:
    """An interactive console that behaves like one Slack thread."""
    configure_logging(json=False, level=40)

    async def session() -> None:
        transport = ConsoleTransport(out)
        aios = await bootstrap(Settings(), transport)
        try:
            await run_chat(aios, transport, user)
        finally:
            await aios.close()

    _run(session)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "0.0.0.0",
    port: Annotated[int, typer.Option(envvar="PORT", help="Port to listen on.")] = 3000,
) -> None:
    """HTTP mode: POST /slack/events, GET /healthz, GET /metrics."""
    configure_logging(json=True)
    _run(lambda: _serve(host, port))


async def _serve(host: str, port: int) -> None:
    settings = Settings()
    settings.require("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET")
    assert settings.slack_signing_secret is not None
    client = build_slack_client(settings.slack_bot_token, settings.slack_api_url)
    aios = await bootstrap(settings, SlackTransport(client))
    bolt = build_slack_app(aios, client, settings.slack_signing_secret)
    runner = web.AppRunner(build_web_app(aios, bolt, settings.slack_signing_secret))
    await runner.setup()
    scheduler = build_scheduler(aios)
    scheduler.start()
    try:
        await web.TCPSite(runner, host, port).start()
        await aios.recover()
        log.info("serving", url=f"http://{host}:{port}", planner=aios.llm.name)
        await _until_stopped()
    finally:
        scheduler.shutdown(wait=False)
        await runner.cleanup()
        await aios.close()


@app.command()
def socket() -> None:
    """Socket Mode: connect out to Slack instead of receiving HTTP (needs SLACK_APP_TOKEN)."""
    configure_logging(json=True)
    _run(lambda: run_socket_mode(Settings()))


async def _until_stopped() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


@app.command()
def digest(
    now: Annotated[bool, typer.Option("--now", help="Build the digest of the last 24 hours now.")] = False,
) -> None:
    """The cost and error digest: posted to AIOS_DIGEST_CHANNEL, or printed when Slack is not configured."""
    configure_logging(json=False, level=40)
    if not now:
        err.print("`aios serve` posts the digest at AIOS_DIGEST_CRON; `aios digest --now` builds it at once.")
        raise typer.Exit(2)
    settings = Settings()
    if settings.slack_bot_token and settings.digest_channel:
        posted = _run(lambda: _digest_to_slack(settings))
        out.print(
            f"digest posted to {settings.digest_channel}"
            if posted
            else "this period's digest was already posted"
        )
        return
    text, blocks = _run(lambda: _with_store(lambda aios: _digest_now(aios)))
    out.print(render(text, blocks), highlight=False, markup=False)
    err.print("(printed, not posted: set SLACK_BOT_TOKEN and AIOS_DIGEST_CHANNEL to post it to Slack)")


async def _digest_now(aios: Aios) -> tuple[str, list[dict[str, Any]]]:
    return digest_message(await build_digest(aios.units, aios.clock(), aios.policy.document.budgets))


async def _digest_to_slack(settings: Settings) -> bool:
    client = build_slack_client(settings.slack_bot_token, settings.slack_api_url)
    aios = await bootstrap(settings, SlackTransport(client))
    try:
        assert settings.digest_channel is not None
        return await post_digest(
            aios.units,
            aios.handlers.transport,
            settings.digest_channel,
            aios.clock(),
            aios.policy.document.budgets,
        )
    finally:
        await aios.close()


@app.command()
def why(record_id: Annotated[str, typer.Argument(metavar="ID", help="R-…, A-…, D-…, AP-… or E-…")]) -> None:
    """Explain a decision: the same as `/aios why ID`."""
    configure_logging(json=False, level=40)
    text = _run(lambda: _with_store(lambda aios: explain_why(aios.units, record_id)))
    out.print(text.replace("*", ""), highlight=False, markup=False)


@app.command()
def cost(
    period: Annotated[str, typer.Argument(help="today, week or month")] = "today",
) -> None:
    """Model spend by agent, run and requester: the same figures as `/aios cost`."""
    configure_logging(json=False, level=40)
    if period not in PERIODS:
        err.print(f"[red]error:[/] {period!r} is not a period; use one of {', '.join(PERIODS)}")
        raise typer.Exit(2)
    report = _run(lambda: _with_store(lambda aios: cost_report(aios.units, period, aios.clock())))
    for table in cost_tables(report):
        out.print(table)


@sandbox_app.command("show")
def sandbox_show(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """The sandbox connectors' state: orders, refunds, posts, emails."""
    configure_logging(json=False, level=40)
    state = _run(lambda: _with_store(lambda aios: sandbox_state(aios.units)))
    if as_json:
        typer.echo(json.dumps(state, indent=2))
        return
    for key, rows in state.items():
        out.print(f"[bold]{key}[/] ({len(rows)})")
        for row in rows:
            out.print(f"  {_one_line(row)}", highlight=False)


def _one_line(row: dict[str, Any]) -> str:
    return ", ".join(
        f"{k}={v}" for k, v in row.items() if k not in ("idempotency_key", "idempotency_keys", "body")
    )


@memory_app.command("remember")
def memory_remember(
    text: str,
    team: TeamOption = CONSOLE_TEAM,
    kind: Annotated[str, typer.Option(help="note, customer, brand_voice, post, decision, …")] = "note",
    key: Annotated[str | None, typer.Option(help="An exact-lookup key, e.g. order:1003")] = None,
    ttl: Annotated[str | None, typer.Option(help="Forget after this long, e.g. 30d")] = None,
) -> None:
    """Remember TEXT for a team."""
    configure_logging(json=False, level=40)
    lifetime = _duration(ttl)
    memory_id, created = _run(
        lambda: _with_store(lambda aios: aios.memory.remember(team, text, kind=kind, key=key, ttl=lifetime))
    )
    out.print(f"{'remembered' if created else 'already remembered'} as M-{memory_id}")


@memory_app.command("search")
def memory_search(
    query: str,
    team: TeamOption = CONSOLE_TEAM,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Search a team's memories (id, text, kind, score, created_at)."""
    configure_logging(json=False, level=40)
    hits = _run(lambda: _with_store(lambda aios: aios.memory.search(team, query, limit=limit)))
    if as_json:
        typer.echo(json.dumps([hit.as_dict() for hit in hits], indent=2))
        return
    for hit in hits:
        out.print(f"M-{hit.id}  {hit.score:.3f}  [{hit.kind}] {hit.text}", highlight=False)
    if not hits:
        out.print("nothing found")


@memory_app.command("forget")
def memory_forget(
    memory_id: Annotated[str, typer.Argument(metavar="ID")], team: TeamOption = CONSOLE_TEAM
) -> None:
    """Forget one memory of a team."""
    configure_logging(json=False, level=40)
    key = int(memory_id.upper().removeprefix("M-"))
    if not _run(lambda: _with_store(lambda aios: aios.memory.forget(team, key))):
        err.print(f"[red]error:[/] team {team} has no memory M-{key}")
        raise typer.Exit(1)
    out.print(f"forgot M-{key}")


@memory_app.command("export")
def memory_export(team: TeamOption = CONSOLE_TEAM) -> None:
    """Print a team's memories as JSON Lines (text, kind, key, metadata, timestamps, vector model)."""
    configure_logging(json=False, level=40)
    for record in _run(lambda: _with_store(lambda aios: aios.memory.export(team))):
        typer.echo(json.dumps(record, sort_keys=True))


@memory_app.command("import")
def memory_import(
    path: Annotated[Path, typer.Argument(metavar="FILE", exists=True, dir_okay=False)],
    team: TeamOption = CONSOLE_TEAM,
) -> None:
    """Import JSON Lines exported by `aios memory export` into a team."""
    configure_logging(json=False, level=40)
    try:
        records = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    except json.JSONDecodeError as exc:
        err.print(f"[red]error:[/] {path} is not JSON Lines (line {exc.lineno}): {exc.msg}")
        raise typer.Exit(2) from None
    imported = _run(lambda: _with_store(lambda aios: aios.memory.import_records(team, records)))
    out.print(f"imported {imported} new memories into {team}")


def _duration(text: str | None) -> timedelta | None:
    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        err.print(f"[red]error:[/] {exc}")
        raise typer.Exit(2) from None


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the Alembic migrations up to head."""
    configure_logging(json=False, level=40)

    async def upgrade() -> None:
        engine = create_engine(Settings().database_url)
        try:
            await upgrade_to_head(engine)
        finally:
            await engine.dispose()

    _run(upgrade)
    out.print("database is at the newest schema")


def main() -> None:
    app()
