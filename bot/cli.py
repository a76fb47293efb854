"""The `aios` command line (Typer + Rich).

Modules are imported inside the commands that use them: `aios --help` and the read-only commands must not pay
for the planner, Slack, the policy's CEL and the web server, which together take seconds to import. Even
asyncio is imported only by the commands that run something: `aios --help` does not need it, and the others
import it after `run` has turned the garbage collector off.
"""

from __future__ import annotations

import gc
import json
import os
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from bot.terminal import CONSOLE_TEAM, INTERRUPTED

if TYPE_CHECKING:
    from pydantic import ValidationError
    from rich.table import Table

    from bot.bootstrap import Aios
    from bot.replay import Scope
    from bot.settings import Settings
    from connectors.catalogue import ConnectorStatus
    from policies.engine import Policy
    from policies.policy_tests import CheckReport
    from policies.replay import Summary
    from storage.memory import MemoryStore
    from storage.unit_of_work import UnitOfWorkFactory

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

T = TypeVar("T")

# Errors a user can fix, by module: each message says what is wrong and how to fix it. Named rather than
# imported, because importing them would import their heavy modules; an error can only have been raised if
# its module was imported.
USER_ERRORS = (
    ("storage.memory.base", "MemoryStoreError"),
    ("policies.errors", "PolicyError"),
    ("storage.engine", "DatabaseUrlError"),
    ("bot.settings", "MissingSettingError"),
    ("bot.demo", "DemoFailedError"),
    ("bot.digest", "DigestScheduleError"),
    ("agents.pricing", "PriceError"),
    ("bot.socket_mode", "SocketModeStartError"),
    ("connectors.errors", "ConnectorSettingError"),
)


def _is_user_error(exc: BaseException) -> bool:
    return any(
        isinstance(exc, getattr(sys.modules[module], name))
        for module, name in USER_ERRORS
        if module in sys.modules
    )


def _fail(message: str, code: int = 2) -> NoReturn:
    err.print(f"[red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


@contextmanager
def _user_errors() -> Iterator[None]:
    """What a user can fix becomes one line on stderr and exit code 2; Ctrl-C becomes exit code 130."""
    from pydantic import ValidationError
    from sqlalchemy.exc import DBAPIError, OperationalError

    from storage.engine import database_problem

    try:
        yield
    except KeyboardInterrupt:
        raise typer.Exit(INTERRUPTED) from None
    except ValidationError as exc:
        if exc.title != "Settings":
            raise
        _fail(_settings_problem(exc))
    except (OperationalError, DBAPIError, OSError) as exc:
        _fail(database_problem(exc))
    except Exception as exc:
        if not _is_user_error(exc):
            raise
        _fail(str(exc))


def _settings_problem(exc: ValidationError) -> str:
    """Settings come from the environment, so each problem is named by its variable."""
    problems = "; ".join(
        f"{'.'.join(str(part) for part in error['loc'])}={error.get('input')!r}: {error['msg']}"
        for error in exc.errors()
    )
    return f"{problems}. Fix it in the environment or the .env file."


def _run(work: Callable[[], Awaitable[T]]) -> T:
    import asyncio

    with _user_errors():
        return asyncio.run(work())  # type: ignore[arg-type]


def _settings() -> Settings:
    from bot.settings import Settings

    with _user_errors():
        return Settings()


def _quiet() -> None:
    """Terminal commands log only errors, as readable lines on stderr.

    Commands that use the SQL store alone skip this: nothing they import logs through structlog, and importing
    the logging set-up (structlog, Prometheus) would take a good part of their start-up time."""
    from bot.logs import configure_logging

    configure_logging(json=False, level=40)


async def _with_store(work: Callable[[Aios], Awaitable[T]]) -> T:
    """Commands that need the whole bot (policy, planner, connectors) without Slack: nothing is posted."""
    from bot.bootstrap import bootstrap
    from bot.console import ConsoleTransport

    _quiet()
    aios = await bootstrap(_settings(), ConsoleTransport(err))
    try:
        return await work(aios)
    finally:
        await aios.close()


@asynccontextmanager
async def _units() -> AsyncIterator[UnitOfWorkFactory]:
    """The SQL store alone, for commands that only read it: quick to start, and it sets nothing else up."""
    from storage.engine import create_engine
    from storage.migrate import upgrade_to_head
    from storage.unit_of_work import UnitOfWorkFactory

    engine = create_engine(_settings().database_url)
    try:
        await upgrade_to_head(engine)
        yield UnitOfWorkFactory.for_engine(engine)
    finally:
        await engine.dispose()


async def _with_units(work: Callable[[UnitOfWorkFactory], Awaitable[T]]) -> T:
    async with _units() as units:
        return await work(units)


async def _with_memory(work: Callable[[MemoryStore], Awaitable[T]]) -> T:
    """The memory store alone (Weaviate too when configured), without the policy's retention rules."""
    from bot.memory_setup import open_memory_store

    _quiet()
    async with _units() as units:
        memory = await open_memory_store(_settings(), units)
        try:
            return await work(memory)
        finally:
            await memory.close()


@app.command()
def demo() -> None:
    """Play the e-commerce and content scenario end to end: no network, no keys."""
    _keep_running()
    from bot.demo import run_demo

    _quiet()
    _run(lambda: run_demo(out))


@app.command()
def chat(
    user: Annotated[str, typer.Option("--as", help="The Slack user id you speak as.")] = "U0ALICE",
) -> None:
    """An interactive console that behaves like one Slack thread (a new thread each time)."""
    _keep_running()
    import asyncio

    from bot.bootstrap import bootstrap
    from bot.console import ConsoleTransport, run_chat

    _quiet()
    transport = ConsoleTransport(out)
    with _user_errors(), asyncio.Runner() as runner:
        aios = runner.run(bootstrap(_settings(), transport))
        try:
            code = run_chat(runner, aios, transport, user)
        finally:
            # A second Ctrl-C must not cut the close short and leave connections half-closed.
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                runner.run(aios.close())
            finally:
                signal.signal(signal.SIGINT, previous)
    raise typer.Exit(code)


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "0.0.0.0",
    port: Annotated[int, typer.Option(envvar="PORT", help="Port to listen on.")] = 3000,
    work: Annotated[
        bool,
        typer.Option(
            "--work/--no-work",
            help="Plan intents and run timers and recovery here too (the default), or only store intents "
            "and ack, leaving that work to `aios worker` processes.",
        ),
    ] = True,
) -> None:
    """HTTP mode: POST /slack/events, GET /healthz, GET /metrics."""
    _keep_running()
    from bot.logs import configure_logging

    configure_logging(json=True)
    _run(lambda: _serve(host, port, work=work))


async def _serve(host: str, port: int, *, work: bool) -> None:
    import structlog
    from aiohttp import web

    from bot.bootstrap import bootstrap, close_or_exit
    from bot.listening import CannotListen, listening_socket, url
    from bot.scheduler import build_lease_keeper, build_scheduler
    from bot.settings import Settings
    from bot.slack_app import build_slack_app
    from bot.slack_transport import SlackTransport, build_slack_client
    from bot.web import build_web_app

    log = structlog.get_logger(__name__)
    settings = Settings()
    settings.require("SLACK_BOT_TOKEN", "SLACK_SIGNING_SECRET")
    assert settings.slack_signing_secret is not None
    # Bound first: a process that cannot listen exits before its scheduler's jobs and its recovery run (and
    # says so, or the generic handler would blame AIOS_DATABASE_URL).
    try:
        sock = listening_socket(host, port)
    except CannotListen as exc:
        _fail(str(exc))
    with sock:
        client = build_slack_client(settings.slack_bot_token, settings.slack_api_url)
        aios = await bootstrap(settings, SlackTransport(client), works=work)
        # build_web_app checks every request's signature over the raw body before Bolt sees it.
        bolt = build_slack_app(aios, client, settings.slack_signing_secret, verified_by_caller=True)
        runner = web.AppRunner(build_web_app(aios, bolt, settings.slack_signing_secret))
        await runner.setup()
        # Without the work, the timers and recovery run in the workers; this process only keeps its lease.
        scheduler = build_scheduler(aios) if work else build_lease_keeper(aios)
        scheduler.start()
        try:
            await web.SockSite(runner, sock).start()
            if work:
                await aios.recover()
            settle_heap()
            # The address really listened on (port 0 picks one): what a supervisor or a test connects to.
            log.info("serving", url=url(sock), planner=aios.llm.name, work=work)
            await _until_stopped()
        finally:
            scheduler.shutdown(wait=False)
            await runner.cleanup()
            await close_or_exit(aios)


@app.command()
def worker() -> None:
    """The runtime's work without the web front door (Procfile `worker`), when the work is split from the acks:
    plans the intents `aios serve --no-work` stores, and runs the timers and recovery."""
    _keep_running()
    from bot.logs import configure_logging

    configure_logging(json=True)
    _lower_priority(_settings().worker_nice)
    _run(_work)


def _lower_priority(nice: int | Literal["idle"]) -> None:
    """Run at niceness ``nice`` or above (never raised: that takes privileges), or ``"idle"``: at niceness 19 and
    under Linux's SCHED_IDLE policy, which any process may take for itself (the niceness is what is left where
    the system has no such policy or refuses it, and the log says so). Before any thread starts: on Linux a
    thread's niceness and policy are its own, and the threads started later (SQLite's) inherit them."""
    target = 19 if nice == "idle" else nice
    current = os.getpriority(os.PRIO_PROCESS, 0)
    if target > current:
        os.nice(target - current)
    if nice == "idle":
        try:
            os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
        except (AttributeError, OSError) as exc:  # not Linux, or a sandbox that forbids the call
            import structlog

            structlog.get_logger(__name__).warning(
                "sched_idle_refused", error=str(exc) or type(exc).__name__, niceness=max(target, current)
            )


async def _work() -> None:
    import asyncio

    import structlog

    from bot.bootstrap import bootstrap, close_or_exit
    from bot.scheduler import build_scheduler
    from bot.settings import Settings
    from bot.slack_transport import SlackTransport, build_slack_client
    from runtime.worker import Worker

    log = structlog.get_logger(__name__)
    settings = Settings()
    settings.require("SLACK_BOT_TOKEN")
    client = build_slack_client(settings.slack_bot_token, settings.slack_api_url)
    aios = await bootstrap(settings, SlackTransport(client))
    aios.claim_loop = True
    scheduler = build_scheduler(aios)
    scheduler.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await aios.recover()
        settle_heap()
        log.info("working", lease=aios.lease.id, planner=aios.llm.name)
        await Worker(aios.units, aios.lease, aios.process).run(stop)
    finally:
        scheduler.shutdown(wait=False)
        await close_or_exit(aios)


@app.command()
def socket() -> None:
    """Socket Mode: connect out to Slack instead of receiving HTTP (needs SLACK_APP_TOKEN)."""
    _keep_running()
    from bot.logs import configure_logging
    from bot.settings import Settings
    from bot.socket_mode import run_socket_mode

    configure_logging(json=True)
    _run(lambda: run_socket_mode(Settings()))


@app.command()
def mcp(
    http: Annotated[bool, typer.Option("--http", help="Streamable HTTP at /mcp instead of stdio.")] = False,
    host: Annotated[str, typer.Option(help="Interface for --http (no auth: keep it local).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on with --http.")] = 8000,
) -> None:
    """AIOS as an MCP server: why, pending approvals, cost, memory search, and proposing actions to the policy."""
    _keep_running()
    from bot.mcp_server import serve_mcp

    _quiet()  # on stdio, stdout carries the protocol: logs go to stderr
    _run(lambda: serve_mcp(_settings(), http=http, host=host, port=port))


async def _until_stopped() -> None:
    import asyncio

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
    from bot.console import render

    _quiet()
    if not now:
        _fail("`aios serve` posts the digest at AIOS_DIGEST_CRON; `aios digest --now` builds it at once.")
    settings = _settings()
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
    from bot.digest import build_digest, digest_message

    return digest_message(await build_digest(aios.units, aios.clock(), aios.policy.document.budgets))


async def _digest_to_slack(settings: Settings) -> bool:
    from bot.bootstrap import bootstrap
    from bot.digest import post_digest
    from bot.slack_transport import SlackTransport, build_slack_client

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
def connectors() -> None:
    """Every connector: real or sandbox, in use or not (and what to set), and a live health check."""
    from rich.table import Table

    statuses = _run(_connector_statuses)
    table = Table("connector", "actions", "kind", "state", show_lines=False)
    for status in statuses:
        mark = {True: "[green]✓[/] ", False: "[red]✗[/] ", None: ""}[status.healthy]
        table.add_row(
            status.name,
            ", ".join(status.actions),
            "real" if status.real else "local",
            mark + escape(status.state),
        )
    out.print(table)
    if any(status.healthy is False for status in statuses):
        raise typer.Exit(1)


async def _connector_statuses() -> list[ConnectorStatus]:
    from dataclasses import replace

    from bot.logs import hide_secrets
    from connectors.base import ConnectorContext
    from connectors.catalogue import connector_statuses
    from connectors.redaction import Redactor

    settings = _settings()
    redactor = Redactor(settings.secrets())  # a server's answer in a health line may echo a credential
    _quiet()  # a connector's own log lines go to stderr, not into the table
    hide_secrets(redactor)
    async with _units() as units:
        context = ConnectorContext(
            units_of_work=units,
            shop_api_url=settings.shop_api_url,
            shop_api_key=settings.shop_api_key,
            http_timeout_seconds=settings.connector_timeout_seconds,
            settings=settings.connector_settings(),
        )
        return [
            replace(status, state=redactor.text(status.state)) for status in await connector_statuses(context)
        ]


@app.command()
def why(record_id: Annotated[str, typer.Argument(metavar="ID", help="R-…, A-…, D-…, AP-… or E-…")]) -> None:
    """Explain a decision: the same as `/aios why ID`."""
    from bot.explain import NotFoundError, explain
    from runtime.mrkdwn import unescape
    from storage.ids import UnknownIdError, parse_id

    try:
        parse_id(record_id)
        text = _run(lambda: _with_units(lambda units: explain(units, record_id)))
    except UnknownIdError as exc:
        _fail(str(exc))
    except NotFoundError as exc:
        _fail(str(exc), code=1)
    # A terminal shows what people and policies wrote as they wrote it, not as Slack's escaped mrkdwn.
    out.print(unescape(text.replace("*", "")), highlight=False, markup=False)


@app.command()
def replay(
    run_id: Annotated[
        str | None, typer.Argument(metavar="RUN", help="A run id (R-17); or use --since for a window.")
    ] = None,
    policy: Annotated[
        Path | None, typer.Option("--policy", metavar="FILE", help="The policy to judge the actions under.")
    ] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Every decision of the last 7d, 24h, 30m … or since a date, instead of one run."),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
    model: Annotated[
        str | None,
        typer.Option(
            metavar="MODEL", help="Instead of a policy: re-plan the recorded intents with this model."
        ),
    ] = None,
    agent: Annotated[
        str | None, typer.Option(metavar="AGENT", help="With --model: only this agent's runs.")
    ] = None,
    yes: Annotated[
        bool, typer.Option("--yes", help="With --model: do not ask before spending (the cost is printed).")
    ] = False,
) -> None:
    """What-if: a run's recorded actions (or a window's) judged again under another policy, as a diff and a
    summary. Reads the records only: no model, no connector, nothing written.

    With --model instead of --policy: the recorded intents planned again by another model from the context
    each run was given, compared with what was proposed then, after the estimated cost is confirmed.
    Nothing is executed or written."""
    from bot.replay import Scope

    if (run_id is None) == (since is None):
        _fail(
            "give a run id (aios replay R-17 --policy FILE) or a window (aios replay --since 7d --policy FILE)"
        )
    if policy is not None and model is not None:
        _fail("--policy and --model are exclusive: replay under another policy, or with another model")
    if model is None and (agent is not None or yes):
        _fail("--agent and --yes go with --model")
    if policy is None and model is None:
        _fail("give the policy to compare with: --policy FILE (or the model to re-plan with: --model MODEL)")
    if run_id is not None:
        from storage.ids import is_id_of, parse_key

        key = parse_key(run_id, "R")
        if key is None:
            if is_id_of(run_id, "R"):  # a key too big for any table
                _fail(f"there is no run {run_id.strip().upper()}", code=1)
            _fail(f"{run_id!r} is not a run id; run ids look like R-17")
        scope = Scope(run_id=key)
    else:
        start = _since(since)
        assert start is not None
        scope = Scope(since=start)
    if model is not None:
        _model_replay(scope, model, agent, yes=yes, as_json=as_json)
        return
    assert policy is not None
    _replay(scope, policy, as_json)


def _replay(scope: Scope, policy_path: Path, as_json: bool) -> None:
    from bot.replay import build_report, count
    from connectors.registry import installed_action_params
    from policies.engine import Policy

    with _user_errors():
        candidate = Policy.from_file(policy_path, installed_action_params())
    listed = 10_000 if as_json else 200  # actions listed; the summary counts them all

    async def work(units: UnitOfWorkFactory) -> Any:
        if scope.run_id is not None:
            from storage.records import Run

            async with units() as uow:
                if await uow.get(Run, scope.run_id) is None:
                    return None
        if not err.is_terminal:
            return await build_report(units, candidate, scope, keep=listed)
        from rich.progress import Progress

        with Progress(console=err, transient=True) as progress:
            task = progress.add_task("replaying", total=await count(units, scope))
            return await build_report(
                units, candidate, scope, keep=listed, progress=lambda n: progress.advance(task, n)
            )

    report = _run(lambda: _with_units(work))
    if report is None:
        _fail(f"there is no run R-{scope.run_id}", code=1)
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=2))
        return
    for line in report.text_lines():
        out.print(line, highlight=False, markup=False)


def _model_replay(scope: Scope, model: str, agent: str | None, *, yes: bool, as_json: bool) -> None:
    """Re-plan the recorded runs in scope with ``model``, after the estimate is shown and confirmed."""
    settings = _settings()
    if not settings.anthropic_api_key:
        _fail(
            "a model replay asks Claude: set ANTHROPIC_API_KEY (and ANTHROPIC_BASE_URL for another endpoint)"
        )
    from agents.pricing import PriceTable
    from bot.replay_context import AGENTS

    with _user_errors():
        prices = PriceTable.with_overrides(settings.llm_prices)
    if model not in prices.models:
        _fail(
            f"no price for model {model!r}; known models: {', '.join(prices.models)} (AIOS_LLM_PRICES adds one)"
        )
    if agent is not None and agent not in AGENTS:
        _fail(f"no agent named {agent!r}; agents: {', '.join(AGENTS)}")
    _quiet()
    from agents.claude import ClaudeLLM
    from agents.llm import LLMError
    from bot.model_replay import Estimate, model_replay
    from bot.replay_context import offered_actions, replay_registry
    from connectors.registry import installed_action_params
    from policies.engine import Policy

    with _user_errors():
        policy = Policy.from_file(settings.policy_file, installed_action_params())
    registry = replay_registry(offered_actions(settings.connector_settings()))
    # The estimate and the question go to stderr: stdout holds only the report (one JSON document with --json).
    interactive = sys.stdin.isatty()
    from rich.progress import Progress

    # Shown on a terminal once the replay is confirmed: each run waits for the model.
    bar = Progress(console=err, transient=True, disable=not err.is_terminal)

    def confirm(estimate: Estimate) -> bool:
        if estimate.runs == 0:
            err.print(f"No run {scope.describe()} to re-plan.", highlight=False, markup=False)
            if not as_json:
                raise typer.Exit(0)  # a JSON reader still gets its (empty) document
            return True
        for line in estimate.lines():
            err.print(line, highlight=False, markup=False)
        if estimate.over_budget is not None:
            _fail(estimate.over_budget, code=1)
        if not yes and not interactive:
            _fail("a model replay spends money: confirm it on a terminal, or pass --yes")
        if not (yes or typer.confirm("Re-plan them?", err=True)):
            return False
        bar.add_task("re-planning", total=estimate.runs)
        bar.start()
        return True

    async def work(units: UnitOfWorkFactory) -> Any:
        llm = ClaudeLLM.from_settings(
            settings.anthropic_api_key or "",
            settings.anthropic_base_url,
            dispatch_model=model,
            agent_model=model,
        )
        try:
            return await model_replay(
                units,
                scope=scope,
                agent=agent,
                llm=llm,
                prices=prices,
                policy=policy,
                registry=registry,
                confirm=confirm,
                progress=lambda done: bar.advance(bar.task_ids[0], done),
            )
        finally:
            bar.stop()
            await llm.close()

    try:
        report = _run(lambda: _with_units(work))
    except LLMError as exc:
        _fail(f"the model could not be used, so the replay stopped: {exc}", code=1)
    if report is None:
        err.print("Nothing was re-planned.", highlight=False, markup=False)
        raise typer.Exit(1)
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=2))
        return
    for line in report.text_lines():
        out.print(line, highlight=False, markup=False)


policy_app = typer.Typer(
    help="Policy files: checked and tested before they are deployed.", no_args_is_help=True
)
app.add_typer(policy_app, name="policy")


@policy_app.command("check")
def policy_check(
    path: Annotated[Path, typer.Argument(metavar="FILE", help="The policy file to check.")],
    against_history: Annotated[
        str | None,
        typer.Option(
            "--against-history",
            metavar="WINDOW",
            help="Also count the recorded decisions of the last 30d, 7d, 24h … that this file would change.",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Check a policy file before it is deployed: schema, conditions and the file's own tests.

    FILE is loaded as the bot would load it (schema, CEL, names), each rule is evaluated against a typical
    action of every installed kind, and the file's `tests:` are run. Exit code 0: all good; 1: a test failed
    or a rule cannot be evaluated; 2: the file does not load."""
    from importlib.metadata import entry_points

    from connectors.registry import ENTRY_POINT_GROUP, installed_action_params
    from policies.engine import Policy
    from policies.errors import PolicyError
    from policies.policy_tests import check

    window = _duration(against_history)
    try:
        if not path.is_file():
            raise PolicyError(f"there is no policy file {path}")
        policy = Policy.from_file(path, installed_action_params())
    except PolicyError as exc:
        if as_json:
            typer.echo(json.dumps({"ok": False, "error": str(exc)}, indent=2))
        _fail(str(exc))
    models = {
        model.name: model for ep in entry_points(group=ENTRY_POINT_GROUP) for model in ep.load().actions
    }
    report = check(policy, models)
    history = _history_summary(policy, window) if window is not None else None
    if as_json:
        document = {"policy": {"source": policy.source, "hash": policy.hash}, **report.as_json()}
        if history is not None:
            document["history"] = {"window": against_history, **history.as_json()}
        typer.echo(json.dumps(document, indent=2))
    else:
        _print_check(policy.source, policy.hash, report)
        if history is not None:
            out.print(f"\n[bold]Against the last {escape(str(against_history))} of decisions[/]")
            for line in history.lines():
                out.print(line, highlight=False, markup=False)
    raise typer.Exit(0 if report.ok else 1)


def _print_check(source: str, content_hash: str, report: CheckReport) -> None:
    out.print(f"[bold]{escape(source)}[/] (policy {content_hash[:12]})", highlight=False)
    if report.publishing_windows:
        windows = ", ".join(report.publishing_windows)
        out.print(f"publishing windows (in AIOS_TIMEZONE): {escape(windows)}", highlight=False)
    for result in report.results:
        test, got = result.test, result.got
        if result.passed and got is not None:
            out.print(
                f"[green]✓[/] {escape(test.name)} — {got.verdict} by {escape(got.rule)}", highlight=False
            )
            continue
        out.print(f"[red]✗[/] {escape(test.name)} ({escape(test.action)})", highlight=False)
        for failure in result.failures:
            out.print(f"    {escape(failure)}", highlight=False)
    for problem in report.problems:
        out.print(f"[red]✗[/] rule {escape(problem.rule)}: {escape(problem.message())}", highlight=False)
    if report.untested_rules:
        out.print(f"rules no test reaches: {escape(', '.join(report.untested_rules))}", highlight=False)
    passed = sum(result.passed for result in report.results)
    failed = len(report.results) - passed
    tally = (
        f"{len(report.results)} tests: {passed} passed, {failed} failed; {len(report.problems)} rule problems"
    )
    out.print(f"[{'green' if report.ok else 'red'}]{tally}[/]", highlight=False)


def _history_summary(policy: Policy, window: timedelta) -> Summary:
    """How the recorded decisions of the window would be judged under this policy (the replay's summary)."""
    from bot.replay import Scope, build_report
    from storage.records import utcnow

    scope = Scope(since=utcnow() - window)
    report = _run(lambda: _with_units(lambda units: build_report(units, policy, scope, keep=0)))
    return report.summary


@app.command()
def cost(
    period: Annotated[str, typer.Argument(help="today, week or month")] = "today",
) -> None:
    """Model spend by agent, run and requester: the same figures as `/aios cost`."""
    from bot.cost import PERIODS, cost_report, cost_tables
    from storage.records import utcnow

    if period not in PERIODS:
        _fail(f"{period!r} is not a period; use one of {', '.join(PERIODS)}")
    report = _run(lambda: _with_units(lambda units: cost_report(units, period, utcnow())))
    for table in cost_tables(report):
        out.print(table)


@app.command()
def calendar(
    month: Annotated[
        list[str] | None, typer.Argument(help="december, 2026-12, next month; this month when omitted")
    ] = None,
    team: TeamOption = CONSOLE_TEAM,
) -> None:
    """The content calendar of a month, week by week: planned, drafted, scheduled and published posts."""
    from bot.content_calendar import UnreadableMonth, calendar_table, month_calendar, read_month

    async def table(aios: Aios) -> Table:
        zone = aios.settings.zone
        first = read_month(" ".join(month or ()), aios.clock().astimezone(zone).date())
        return calendar_table(await month_calendar(aios.units, aios.registry, team, first, zone))

    try:
        out.print(_run(lambda: _with_store(table)))
    except UnreadableMonth as exc:
        _fail(str(exc).replace("/aios calendar", "aios calendar"))


@sandbox_app.command("show")
def sandbox_show(as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
    """The sandbox connectors' state: orders, refunds, posts, emails."""
    state = _run(_sandbox_state)
    if as_json:
        typer.echo(json.dumps(state, indent=2))
        return
    for key, rows in state.items():
        out.print(f"[bold]{key}[/] ({len(rows)})")
        for row in rows:
            out.print(f"  {_one_line(row)}", highlight=False)


async def _sandbox_state() -> dict[str, list[dict[str, Any]]]:
    from connectors.sandbox_orders import seed_orders
    from connectors.sandbox_state import sandbox_state

    async with _units() as units:
        # A fresh store shows the sandbox shop's starting orders, as the bot would see them. Only those are
        # seeded: loading the connectors (their action models, Stripe's SDK, MCP, …) would slow the command.
        await seed_orders(units)
        return await sandbox_state(units)


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
    """Remember TEXT for a team; without --key, under the one order, customer, post or payment TEXT names."""
    from bot.slash import key_problem, kind_problem
    from storage.memory.entities import inferred_key, normalised_key

    if problem := kind_problem(kind) or (key_problem(key) if key is not None else None):
        _fail(problem.replace("`", "'"))
    lifetime = _duration(ttl)
    stored_key = normalised_key(key) if key is not None else inferred_key(text)
    # The whole bot: the policy's retention rules decide how long each kind is kept.
    memory_id, created = _run(
        lambda: _with_store(
            lambda aios: aios.memory.remember(team, text, kind=kind, key=stored_key, ttl=lifetime)
        )
    )
    under = f" under {stored_key}" if stored_key and key is None and created else ""
    out.print(f"{'remembered' if created else 'already remembered'} as M-{memory_id}{under}", highlight=False)


@memory_app.command("search")
def memory_search(
    query: str,
    team: TeamOption = CONSOLE_TEAM,
    limit: Annotated[int, typer.Option(min=1, max=100)] = 5,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Search a team's memories (id, text, kind, score, created_at)."""
    hits = _run(lambda: _with_memory(lambda memory: memory.search(team, query, limit=limit)))
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
    key = _memory_key(memory_id)
    # An id wider than any key names no memory: there is nothing to forget, as for any other id not held.
    if key is None or not _run(lambda: _with_memory(lambda memory: memory.forget(team, key))):
        _fail(f"team {team} has no memory M-{memory_id.strip().upper().removeprefix('M-')}", code=1)
    out.print(f"forgot M-{key}")


def _memory_key(text: str) -> int | None:
    """The key of a memory id (``M-4``, or ``4``); None when it is too wide for any memory to have."""
    from storage.ids import is_id_of, parse_key

    id_ = text if "-" in text else f"M-{text}"
    if not is_id_of(id_, "M"):
        _fail(f"{text!r} is not a memory id; memory ids look like M-4")
    return parse_key(id_, "M")


@memory_app.command("export")
def memory_export(
    team: TeamOption = CONSOLE_TEAM,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", help="Write to this file instead of stdout.", dir_okay=False),
    ] = None,
) -> None:
    """Write a team's memories as a snapshot (JSON Lines: a header, then one memory a line; see the README)."""
    from storage.memory.snapshot import snapshot_lines
    from storage.records import utcnow

    memories = _run(lambda: _with_memory(lambda memory: memory.export(team)))
    lines = snapshot_lines(team, memories, utcnow())
    if output is None:
        for line in lines:
            typer.echo(line)
        return
    try:
        with output.open("w", encoding="utf-8") as file:
            file.writelines(f"{line}\n" for line in lines)
    except OSError as exc:
        _fail(f"cannot write {output}: {exc.strerror or exc}")
    out.print(f"exported {len(memories)} memories of {team} to {output}", highlight=False)


@memory_app.command("import")
def memory_import(
    path: Annotated[
        Path,
        typer.Argument(metavar="FILE", help="A snapshot, or - for stdin.", dir_okay=False, allow_dash=True),
    ],
    team: TeamOption = CONSOLE_TEAM,
) -> None:
    """Import a snapshot written by `aios memory export` into a team, timestamps and all."""
    from storage.memory.snapshot import import_snapshot, lines_of

    try:
        snapshot = sys.stdin.read() if str(path) == "-" else path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        _fail(f"{path} is not UTF-8 text: a snapshot is JSON Lines")
    except OSError as exc:
        _fail(f"cannot read {path}: {exc.strerror or exc}")
    lines = lines_of(snapshot)
    imported = _run(lambda: _with_memory(lambda memory: import_snapshot(memory, team, lines)))
    out.print(f"imported {imported} new memories into {team}")


def _duration(text: str | None) -> timedelta | None:
    from policies.model import parse_duration

    if text is None:
        return None
    try:
        return parse_duration(text)
    except ValueError as exc:
        _fail(str(exc))


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the Alembic migrations up to head."""

    async def upgrade() -> None:
        async with _units():
            pass

    _run(upgrade)
    out.print("database is at the newest schema")


# --- aios audit: the hash chain of decisions, approvals, executions and policy versions ---

audit_app = typer.Typer(help="The tamper-evident audit trail.", no_args_is_help=True)
app.add_typer(audit_app, name="audit")


@audit_app.command("verify")
def audit_verify(
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON document.")] = False,
) -> None:
    """Walk the audit chain, every audited record and every execution's cover. Exit code 0: intact; 1: the
    first record edited, deleted or inserted out of order, or an execution without cover, is named."""
    from bot.audit_proof import ParamsHasher, installed_action_models, roles_of_policy
    from storage.audit import verify

    hasher = ParamsHasher(installed_action_models())
    report = _run(lambda: _with_units(lambda units: verify(units, hasher, roles_of_policy)))
    if as_json:
        typer.echo(json.dumps(report.as_json(), indent=2))
    elif (first := report.first()) is not None:
        more = len(report.problems) - 1
        typer.echo(f"broken: {first.line()}" + (f" (and {more} more; --json lists them)" if more else ""))
    else:
        typer.echo(
            f"intact: {report.entries} entries over {report.records} records, {report.executions} executions "
            f"covered; head {report.head_hash}"
        )
    if not as_json:
        for note in report.unproven:  # not a break, but never to pass for proven
            typer.echo(f"unproven: {note.line()}")
    raise typer.Exit(0 if report.intact else 1)


@audit_app.command("export")
def audit_export(
    since: Annotated[
        str | None, typer.Option(help="Entries of the last 7d, 24h … or since a date (2026-11-01).")
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="JSON Lines, one entry a line, for an archive.")
    ] = False,
) -> None:
    """The audit trail, oldest first: a table to read, or JSON Lines (--json) with each record's content."""
    from storage.audit import export

    start = _since(since)

    async def write(units: UnitOfWorkFactory) -> None:
        try:
            if not as_json:
                sys.stdout.write(
                    f"{'entry':<8} {'recorded (UTC)':<19}  {'record':<28} {'content':<16}  entry\n"
                )
            async for entry in export(units, start):
                if as_json:
                    sys.stdout.write(json.dumps(entry, ensure_ascii=False) + "\n")
                else:
                    sys.stdout.write(
                        f"#{entry['seq']:<7} {entry['recorded_at'][:19]}  {entry['record']:<28} "
                        f"{entry['content_hash'][:16]}  {entry['entry_hash'][:16]}\n"
                    )
        except BrokenPipeError:
            # The reader stopped (`| head`): it has what it wanted, and nothing more goes to the closed pipe.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())

    _run(lambda: _with_units(write))


def _since(text: str | None) -> datetime | None:
    """``7d``/``24h``… back from now, or a date or ISO time (UTC unless it says otherwise)."""
    from datetime import UTC

    from policies.model import parse_duration
    from storage.records import utcnow

    if text is None:
        return None
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            return utcnow() - parse_duration(text)
        except ValueError:
            _fail(f"--since {text!r} is neither a window (7d, 24h, 30m) nor a date (2026-11-01)")
    return moment.astimezone(UTC) if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def run() -> NoReturn:
    """The `aios` executable: `main`, without the two costs a short command need not pay.

    The cyclic garbage collector runs again and again while the thousands of objects that SQLAlchemy and
    SQLModel build at import are created, and the interpreter frees every one of them at exit; together that
    is a third of a light command's time. Commands that keep running turn collection back on
    (`_keep_running`); every command has closed its connections and files before `main` returns."""
    gc.disable()
    try:
        main()
        code: object = 0
    except SystemExit as exc:
        code = exc.code
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code if isinstance(code, int) else 0 if code is None else 1)


def _keep_running() -> None:
    """A long-running command collects garbage as usual."""
    gc.enable()


def settle_heap() -> None:
    """Once a long-running command has started: what it built to start (modules, tables, compiled statements,
    the app) lives as long as the process, so it is set aside from the cyclic collector. A full collection
    otherwise walks those hundreds of thousands of objects each time (tens of milliseconds, every request
    waiting meanwhile); it now walks what was made since."""
    gc.collect()
    gc.freeze()


def main() -> None:
    try:
        code = app(standalone_mode=False)
    except typer.Abort:
        code = 1
    except typer.TyperException as exc:  # a usage error: an unknown command, a missing or bad argument
        if type(exc).__name__ == "NoArgsIsHelpError":  # `aios` alone: the help, as asked for
            out.print(exc.format_message(), highlight=False, markup=False)
            sys.exit(0)
        ctx = getattr(exc, "ctx", None)
        where = f"{ctx.command_path}: " if ctx is not None else ""
        help_command = ctx.command_path if ctx is not None else "aios"
        err.print(
            f"[red]error:[/] {escape(where + exc.format_message())} (see `{escape(help_command)} --help`)",
            highlight=False,
        )
        code = exc.exit_code
    sys.exit(code if isinstance(code, int) else 0)
