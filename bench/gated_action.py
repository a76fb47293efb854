"""Where a gated action's SQL and time go: one $250 refund through the whole bot, beside LangGraph.

    .venv/bin/python -m bench.gated_action [--runs 50] [--postgres URL] [--profile] [--statements]

Ours: the bot built in process as `aios chat` builds it (the packaged policy, the offline planner, the console's
transport, a SQLite file or a throwaway PostgreSQL database), then per run: a requester's intent "refund order
N, $250, arrived broken" in a new thread → planned → the policy asks a manager → approval card → the manager's
click (DecideApproval, as Slack's button hands it over) → the sandbox refund → the Done message and the
records. Each run has an order of its own (added before the run is timed), so every run does the same work.
SQL statements and transactions are counted from the engine's events (`before_cursor_execute`, and `begin`,
`commit`, `rollback` on the sync engine under the async one) and split by step: the step boundaries are the
bus's handlers, the crash points between them and the agent's planning. The App Home's redraw that the approval
and the execution set off runs in a task of its own, beside the action: its SQL is counted apart from the action's
(by the task it runs in, not by the step it happens to overlap) and left out of the action's total.

The anchor: LangGraph with its SQLite checkpointer (AsyncSqliteSaver on a file) runs the same shape (plan,
judge, wait for approval with `interrupt`, resume with `Command(resume=...)`, execute, record) in the same
event loop, run for run beside ours. It needs the bench extra: pip install -e '.[bench]'.

--profile runs pyinstrument over gated actions afterwards and prints the top of the call tree, the functions
with the most time of their own, and that time by package. --statements prints the SQL of one run, by step.
"""

from __future__ import annotations

import argparse
import asyncio
import contextvars
import os
import re
import statistics
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import (
    AbstractAsyncContextManager,
    AsyncExitStack,
    ExitStack,
    asynccontextmanager,
    contextmanager,
)
from dataclasses import dataclass, field
from functools import wraps
from pathlib import Path
from typing import Any, TypedDict
from unittest import mock

from rich.console import Console
from sqlalchemy import event

from bot.blocks import APPROVE_ACTION_ID
from bot.bootstrap import Aios, bootstrap
from bot.console import ConsoleTransport
from bot.logs import configure_logging
from bot.settings import Settings
from bot.terminal import CONSOLE_CHANNEL, CONSOLE_TEAM
from runtime.handlers import approvals, execution, planning
from runtime.intake import IncomingIntent
from runtime.messages import DecideApproval, HandleIntent
from storage.ids import parse_id
from storage.records import Approval, ExecutionStatus, SandboxOrder

REQUESTER = "U0ALICE"
MANAGER = "U0MANAGER"  # a manager in the packaged policy
FIRST_ORDER = 20_001  # past the sandbox's seeded orders: each run refunds an order of its own
WARM_UP = 2  # runs before the timed ones: the first pays for imports, compiled conditions, cold caches
LANGGRAPH_MISSING = "the LangGraph anchor needs the bench extra: pip install -e '.[bench]'"

# What runs after each crash point, up to the next boundary (runtime/crashpoints.py names the boundaries).
AFTER_BOUNDARY = {
    "run_started": "routed (offline notice, agent, pause)",
    "actions_proposed": "card posted",
    "approval_committed": "card settled",
    "execution_claimed": "connector called",
    "connector_done": "execution booked",
}
# The first step of each command's handler.
COMMAND_STEP = {
    "HandleIntent": "intent read, run started",
    "DecideApproval": "click decided",
    "ExecuteAction": "execution claimed",
}
OUTSIDE = ("setup", "check")  # the meter's steps that are not part of the gated action
HOME_REDRAWN = "App Home redrawn (its own task, beside the action)"
# The step of the background task a statement runs in, if it runs in one (the engine's events run in the
# caller's context): such statements are not the step's the action is in at the time.
_beside: contextvars.ContextVar[str | None] = contextvars.ContextVar("beside", default=None)


@dataclass
class StepMeter:
    """Statements, transactions and wall time per step, as the engine reports them."""

    step: str = "setup"
    steps: list[str] = field(default_factory=list)  # in the order first entered
    statements: Counter[str] = field(default_factory=Counter)
    begins: Counter[str] = field(default_factory=Counter)
    commits: Counter[str] = field(default_factory=Counter)
    rollbacks: Counter[str] = field(default_factory=Counter)
    seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    cpu_seconds: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))
    sql: dict[str, list[str]] | None = None  # every statement's first line, by step, while kept
    _since: float = field(default_factory=time.perf_counter)
    _cpu_since: float = field(default_factory=time.process_time)

    def reset(self, *, keep_sql: bool = False) -> None:
        """Forget what was counted so far (the warm-up); ``keep_sql``: keep the statements from now on."""
        for counter in (self.statements, self.begins, self.commits, self.rollbacks):
            counter.clear()
        self.seconds.clear()
        self.cpu_seconds.clear()
        self.steps.clear()
        self.sql = {} if keep_sql else None
        self.enter(self.step)

    def enter(self, step: str) -> None:
        now, cpu = time.perf_counter(), time.process_time()
        self.seconds[self.step] += now - self._since
        self.cpu_seconds[self.step] += cpu - self._cpu_since
        self._since, self._cpu_since, self.step = now, cpu, step
        if step not in self.steps:
            self.steps.append(step)

    def _counted_in(self) -> str:
        """The step a statement or a transaction event now belongs to: a background task's, else the current."""
        beside = _beside.get()
        if beside is None:
            return self.step
        if beside not in self.steps:
            self.steps.append(beside)
        return beside

    def statement(self, conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if statement.startswith("BEGIN"):
            return  # SQLite's BEGIN IMMEDIATE (storage/engine.py): the transaction, counted by `begin`
        step = self._counted_in()
        self.statements[step] += 1
        # A statement sent alone (a batch of intents on PostgreSQL) is a transaction of its own, committed.
        if _autocommit(conn):
            self.begins[step] += 1
            self.commits[step] += 1
        if self.sql is not None:
            self.sql.setdefault(step, []).append(" ".join(statement.split())[:160])

    # SQLAlchemy begins and rolls back a connection in autocommit too, sending nothing: not counted.
    def begin(self, conn: Any) -> None:
        if not _autocommit(conn):
            self.begins[self._counted_in()] += 1

    def commit(self, conn: Any) -> None:
        if not _autocommit(conn):
            self.commits[self._counted_in()] += 1

    def rollback(self, conn: Any) -> None:
        if not _autocommit(conn):
            self.rollbacks[self._counted_in()] += 1

    @contextmanager
    def listening(self, engine: Any) -> Iterator[None]:
        hooks: list[tuple[str, Callable[..., None]]] = [
            ("before_cursor_execute", self.statement),
            ("begin", self.begin),
            ("commit", self.commit),
            ("rollback", self.rollback),
        ]
        for name, hook in hooks:
            event.listen(engine, name, hook)
        try:
            yield
        finally:
            for name, hook in hooks:
                event.remove(engine, name, hook)


def _autocommit(conn: Any) -> bool:
    return bool(conn.get_execution_options().get("isolation_level") == "AUTOCOMMIT")


class RecordingTransport(ConsoleTransport):
    """The console's transport (messages kept, threads read back from them) without drawing in a terminal."""

    def _print(self, who: str, body: str) -> None:
        pass


def _labelled(meter: StepMeter, step: str, handler: Callable[[Any], Awaitable[Any]]) -> Any:
    @wraps(handler)
    async def labelled(message: Any) -> Any:
        meter.enter(step)
        return await handler(message)

    return labelled


@contextmanager
def step_boundaries(aios: Aios, meter: StepMeter) -> Iterator[None]:
    """Mark the steps: each handler on the bus, each crash point, the agents' context and planning."""
    bus = aios.bus
    commands = dict(bus._command_handlers)
    subscribers = {kind: list(handlers) for kind, handlers in bus._event_handlers.items()}
    for command, handler in commands.items():
        step = COMMAND_STEP.get(command.__name__, command.__name__)
        bus._command_handlers[command] = _labelled(meter, step, handler)
    for kind, handlers in subscribers.items():
        bus._event_handlers[kind] = [
            _labelled(meter, f"{kind.__name__} → {getattr(h, '__qualname__', h)}", h) for h in handlers
        ]

    def crash_point(name: str) -> None:
        if name in AFTER_BOUNDARY:
            meter.enter(AFTER_BOUNDARY[name])

    with ExitStack() as patches:
        for module in (planning, approvals, execution):
            patches.enter_context(mock.patch.object(module, "crash_point", crash_point))
        patches.enter_context(
            mock.patch.object(aios.home, "refresh_all", _beside_the_action(aios.home.refresh_all))
        )
        for agent in aios.handlers.dispatcher.agents.values():
            patches.enter_context(mock.patch.object(agent, "context", _entering(meter, agent.context)))
            patches.enter_context(mock.patch.object(agent, "plan", _planning(meter, agent.plan)))
        try:
            yield
        finally:
            bus._command_handlers.update(commands)
            bus._event_handlers.update(subscribers)


def _beside_the_action(refresh_all: Callable[[], Awaitable[None]]) -> Any:
    async def redrawn() -> None:
        _beside.set(HOME_REDRAWN)  # the redraw's own task: its context goes with it
        await refresh_all()

    return redrawn


def _entering(meter: StepMeter, context: Callable[[Any], Awaitable[Any]]) -> Any:
    async def read_context(request: Any) -> Any:
        meter.enter("planned: context (memory, order)")
        found = await context(request)
        meter.enter("planned: model and tools")
        return found

    return read_context


def _planning(meter: StepMeter, plan: Callable[[Any], Awaitable[Any]]) -> Any:
    async def planned(request: Any) -> Any:
        result = await plan(request)
        meter.enter("judged, approval stored")
        return result

    return planned


def _approval_on_card(transport: ConsoleTransport, thread_ts: str) -> int:
    """The approval the thread's card asks for, read off its Approve button as Slack's click would be."""
    for message in reversed(transport.messages):
        if message.thread_ts != thread_ts or not message.blocks:
            continue
        for block in message.blocks:
            for element in block.get("elements", []) if block.get("type") == "actions" else []:
                if element.get("action_id") == APPROVE_ACTION_ID:
                    return parse_id(element["value"])[1]
    raise AssertionError(
        f"no approval card in thread {thread_ts}: {[m.text for m in transport.messages[-3:]]}"
    )


@dataclass
class Ours:
    aios: Aios
    transport: RecordingTransport
    meter: StepMeter
    approvals: dict[int, int] = field(default_factory=dict)  # order → the approval its refund waited for

    async def add_order(self, order_id: int) -> None:
        self.meter.enter("setup")
        async with self.aios.units() as uow:
            uow.session.add(
                SandboxOrder(
                    id=order_id,
                    customer_name="Bench Customer",
                    customer_email="bench@example.com",
                    item="Stoneware set",
                    total=1000.0,
                )
            )
            await uow.commit()

    async def gated_action(self, order_id: int) -> tuple[float, float]:
        """One refund from the requester's message to the Done: (wall, CPU) seconds it took."""
        transport, meter = self.transport, self.meter
        started, cpu = time.perf_counter(), time.process_time()
        meter.enter("intent stored")
        # As the console starts a thread: the thread's first message, then the request in it.
        thread_ts = await transport.post(CONSOLE_CHANNEL, f"Thread started by <@{REQUESTER}>")
        text = f"refund order {order_id}, $250, arrived broken"
        message_ts = await transport.note_user_message(CONSOLE_CHANNEL, REQUESTER, text, thread_ts)
        intent_id = await self.aios.accept(
            IncomingIntent("console", CONSOLE_TEAM, CONSOLE_CHANNEL, thread_ts, REQUESTER, text, message_ts)
        )
        assert intent_id is not None
        await self.aios.process(HandleIntent(intent_id))
        approval_id = _approval_on_card(transport, thread_ts)
        await self.aios.process(DecideApproval(approval_id, MANAGER, approve=True, channel=CONSOLE_CHANNEL))
        elapsed = time.perf_counter() - started, time.process_time() - cpu
        meter.enter("check")
        self.approvals[order_id] = approval_id
        return elapsed

    async def check(self, order_id: int) -> None:
        """The refund ran once and succeeded: a bench of a failing path would measure something else."""
        self.meter.enter("check")
        # The redraws the action set off finish before it is checked, so that each run's are counted in it.
        await self.aios.home.settle()
        async with self.aios.units.read() as uow:
            approval = await uow.get(Approval, self.approvals[order_id])
            assert approval is not None
            statuses = [e.status for e in await uow.executions.executions_for_action(approval.action_id)]
            refunded = await uow.get(SandboxOrder, order_id)
        if statuses != [ExecutionStatus.SUCCEEDED] or refunded is None or refunded.refunded != 250.0:
            raise AssertionError(f"the refund on order {order_id} ended {statuses}, not in one success")


@asynccontextmanager
async def our_bot(url: str, *, steps: bool = True) -> AsyncIterator[Ours]:
    """The bot as `aios chat` builds it, on the store at ``url``; ``steps``: its steps marked and metered."""
    settings = Settings(
        AIOS_DATABASE_URL=url,
        AIOS_MEMORY_EMBEDDINGS="off",
        ANTHROPIC_API_KEY="",  # the offline planner, whatever the environment holds
        _env_file=None,
    )
    transport = RecordingTransport(Console(quiet=True))
    aios = await bootstrap(settings, transport)
    meter = StepMeter()
    try:
        with ExitStack() as metering:
            if steps:
                metering.enter_context(meter.listening(aios.engine.sync_engine))
                metering.enter_context(step_boundaries(aios, meter))
            yield Ours(aios, transport, meter)
    finally:
        await aios.close()


# --- the anchor --------------------------------------------------------------------------------------------


class RefundState(TypedDict, total=False):
    text: str
    action: dict[str, Any]
    verdict: str
    decision: dict[str, Any]
    result: dict[str, Any]
    record: str


_AMOUNT = re.compile(r"\$(\d+(?:\.\d+)?)")
_ORDER = re.compile(r"order (\d+)")


@dataclass
class Anchor:
    """LangGraph's gated shape: five nodes, an interrupt for the approval, a resume, a checkpoint per step."""

    graph: Any
    saver: Any
    statements: list[str]
    refunds: dict[str, dict[str, Any]] = field(default_factory=dict)

    async def gated_action(self, order_id: int) -> tuple[float, float]:
        from langgraph.types import Command

        config = {"configurable": {"thread_id": f"refund-{order_id}"}}
        started, cpu = time.perf_counter(), time.process_time()
        waiting = await self.graph.ainvoke({"text": f"refund order {order_id}, $250, arrived broken"}, config)
        assert "__interrupt__" in waiting, waiting
        done = await self.graph.ainvoke(Command(resume={"approve": True, "user": MANAGER}), config)
        elapsed = time.perf_counter() - started, time.process_time() - cpu
        assert done["record"].startswith("refunded"), done
        return elapsed

    def counts(self) -> tuple[int, int]:
        """(transactions, statements other than BEGIN and COMMIT) sent to SQLite since last cleared."""
        transactions = sum(1 for s in self.statements if s.startswith("BEGIN"))
        control = sum(1 for s in self.statements if s.startswith(("BEGIN", "COMMIT", "ROLLBACK")))
        return transactions, len(self.statements) - control

    async def checkpoints(self, order_id: int) -> int:
        config = {"configurable": {"thread_id": f"refund-{order_id}"}}
        return len([c async for c in self.saver.alist(config)])


@asynccontextmanager
async def langgraph_anchor(folder: Path) -> AsyncIterator[Anchor]:
    try:
        from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver
        from langgraph.graph import END, START, StateGraph
        from langgraph.types import interrupt
    except ImportError:
        raise SystemExit(LANGGRAPH_MISSING) from None

    refunds: dict[str, dict[str, Any]] = {}

    def plan(state: RefundState) -> RefundState:
        amount, order = _AMOUNT.search(state["text"]), _ORDER.search(state["text"])
        assert amount is not None and order is not None
        reason = state["text"].rsplit(",", 1)[-1].strip()
        return {
            "action": {"order_id": int(order.group(1)), "amount": float(amount.group(1)), "reason": reason}
        }

    def judge(state: RefundState) -> RefundState:
        return {"verdict": "require_approval" if state["action"]["amount"] > 100 else "allow"}

    def await_approval(state: RefundState) -> RefundState:
        if state["verdict"] != "require_approval":
            return {"decision": {"approve": True, "user": "policy"}}
        return {"decision": interrupt({"action": state["action"], "approvers": ["manager"]})}

    def execute(state: RefundState) -> RefundState:
        if not state["decision"]["approve"]:
            return {"result": {}}
        key = f"{state['action']['order_id']}:{state['action']['amount']}"
        refund = refunds.setdefault(key, {"refund_id": f"re_{len(refunds) + 1}", **state["action"]})
        return {"result": refund}

    def record(state: RefundState) -> RefundState:
        return {"record": f"refunded ${state['action']['amount']:.2f} as {state['result']['refund_id']}"}

    builder = StateGraph(RefundState)
    steps: list[tuple[str, Any]] = [  # langgraph's node protocols name the parameter; a Callable does not
        ("plan", plan),
        ("judge", judge),
        ("await_approval", await_approval),
        ("execute", execute),
        ("record", record),
    ]
    previous = START
    for name, node in steps:
        builder.add_node(name, node)
        builder.add_edge(previous, name)
        previous = name
    builder.add_edge(previous, END)
    statements: list[str] = []
    async with AsyncSqliteSaver.from_conn_string(str(folder / "langgraph.db")) as saver:
        await saver.setup()
        await saver.conn.set_trace_callback(statements.append)
        yield Anchor(builder.compile(checkpointer=saver), saver, statements, refunds)


# --- the run -----------------------------------------------------------------------------------------------


@dataclass
class ThreadCalls:
    """Counts the calls aiosqlite hands to its thread (SQLite runs there; each call is a trip there and back)."""

    counts: Counter[str] = field(default_factory=Counter)

    @contextmanager
    def counted(self, side: str, *, timed: bool) -> Iterator[None]:
        import aiosqlite.core

        original: Callable[..., Awaitable[Any]] = aiosqlite.core.Connection._execute
        counts = self.counts

        async def execute(connection: Any, fn: Any, *args: Any, **kwargs: Any) -> Any:
            counts[side] += 1
            return await original(connection, fn, *args, **kwargs)

        if not timed:
            yield
            return
        with mock.patch.object(aiosqlite.core.Connection, "_execute", execute):
            yield


@dataclass(frozen=True)
class Step:
    """One step of our gated action, per run (averaged)."""

    name: str
    transactions: float
    committed: float
    rolled_back: float  # read-only units of work end with a rollback
    statements: float
    ms: float
    cpu_ms: float
    beside: bool = False  # a background task's, not part of the action's total


@dataclass
class Result:
    runs: int
    database: str
    steps: list[Step]
    ours_ms: list[float]  # wall, per timed run
    ours_cpu_ms: list[float]  # the process's CPU time (all its threads), per timed run
    anchor_ms: list[float]
    anchor_cpu_ms: list[float]
    anchor_checkpoints: int
    anchor_transactions: float
    anchor_statements: float
    # Calls handed to aiosqlite's thread (each statement, BEGIN, commit…), per gated action;
    # 0 for ours on PostgreSQL.
    ours_thread_calls: float = 0.0
    anchor_thread_calls: float = 0.0
    load: tuple[float, float] = (0.0, 0.0)  # the machine's 1-minute load average at the start and the end
    sql: dict[str, list[str]] | None = None

    @property
    def total(self) -> Step:
        """The gated action's own steps added up (without what ran beside it)."""
        own = [s for s in self.steps if not s.beside]
        return Step(
            "total",
            sum(s.transactions for s in own),
            sum(s.committed for s in own),
            sum(s.rolled_back for s in own),
            sum(s.statements for s in own),
            sum(s.ms for s in own),
            sum(s.cpu_ms for s in own),
        )

    def table(self) -> str:
        lines = [
            f"One gated $250 refund, ours on a {self.database}: per gated action, the mean of {self.runs} runs "
            f"after {WARM_UP} warm-up runs (load average {self.load[0]:.1f} at the start, "
            f"{self.load[1]:.1f} at the end)",
            "(tx: transactions begun, of them committed and rolled back; statements: SQL sent, without BEGIN)",
            "",
            f"{'step':<56}{'tx':>5}{'commit':>8}{'rollbk':>8}{'stmts':>7}{'ms':>8}{'CPU ms':>8}",
        ]
        beside = [s for s in self.steps if s.beside]
        for step in [*(s for s in self.steps if not s.beside), self.total, *beside]:
            lines.append(
                f"{step.name:<56}{step.transactions:>5.1f}{step.committed:>8.1f}{step.rolled_back:>8.1f}"
                f"{step.statements:>7.1f}{step.ms:>8.1f}{step.cpu_ms:>8.1f}"
            )
        ours, anchor, total = _median(self.ours_ms), _median(self.anchor_ms), self.total
        ours_cpu, anchor_cpu = _median(self.ours_cpu_ms), _median(self.anchor_cpu_ms)
        lines += [
            "",
            f"{'per gated action':<36}{'median ms':>10}{'p90 ms':>9}{'CPU ms':>8}{'tx':>5}{'stmts':>7}"
            f"{'thread calls':>14}{'checkpoints':>13}",
            f"{'ours (' + self.database + ')':<36}{ours:>10.1f}{_p90(self.ours_ms):>9.1f}{ours_cpu:>8.1f}"
            f"{total.transactions:>5.0f}{total.statements:>7.0f}{self.ours_thread_calls:>14.0f}",
            f"{'LangGraph, AsyncSqliteSaver (file)':<36}{anchor:>10.1f}{_p90(self.anchor_ms):>9.1f}"
            f"{anchor_cpu:>8.1f}{self.anchor_transactions:>5.0f}{self.anchor_statements:>7.0f}"
            f"{self.anchor_thread_calls:>14.0f}{self.anchor_checkpoints:>13}",
            f"ours / LangGraph: {ours / anchor:.1f}× the median time ({ours_cpu / anchor_cpu:.1f}× the CPU), "
            f"{total.transactions / self.anchor_transactions:.1f}× the transactions, "
            f"{total.statements / self.anchor_statements:.1f}× the statements",
            "(CPU ms: the median of the process's CPU time per gated action, all threads; steadier than wall time "
            "on a busy machine. Thread calls: the calls handed to aiosqlite's thread and back; for ours a statement "
            "with its rows each, of transactions that only read (one holding the write lock runs on the event "
            "loop's thread); a cursor, an execute, a fetch each for LangGraph's)",
        ]
        return "\n".join(lines)


def _median(values: list[float]) -> float:
    return statistics.median(values)


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[-1] if len(values) > 1 else values[0]


def _store_name(url: str) -> str:
    return "PostgreSQL database" if url.startswith("postgres") else "SQLite file"


@asynccontextmanager
async def throwaway_database(base_url: str) -> AsyncIterator[str]:
    """A new PostgreSQL database made from ``base_url``'s server, dropped afterwards."""
    import pytest

    from tests.conftest import throwaway_postgres

    throwaway: AbstractAsyncContextManager[str] = throwaway_postgres(base_url)
    try:
        url = await throwaway.__aenter__()
    except pytest.skip.Exception as exc:  # the tests' helper skips when the server cannot be reached
        raise SystemExit(str(exc)) from None
    try:
        yield url
    finally:
        await throwaway.__aexit__(None, None, None)


async def measure(runs: int, database_url: str | None = None, *, keep_sql: bool = False) -> Result:
    """``runs`` gated actions each, ours and the anchor's taking turns, after WARM_UP untimed ones; ours on
    ``database_url`` (empty), or on a new SQLite file."""
    if runs < 1:
        raise ValueError("runs must be at least 1")
    load_at_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="aios-bench-") as directory:
        folder = Path(directory)
        url = database_url or f"sqlite+aiosqlite:///{folder / 'aios.db'}"
        calls = ThreadCalls()
        async with our_bot(url) as ours, langgraph_anchor(folder) as anchor:
            meter = ours.meter
            ours_ms: list[float] = []
            ours_cpu_ms: list[float] = []
            anchor_ms: list[float] = []
            anchor_cpu_ms: list[float] = []
            sql: dict[str, list[str]] | None = None
            for number in range(WARM_UP + runs):
                order_id = FIRST_ORDER + number
                await ours.add_order(order_id)
                if number == WARM_UP:
                    meter.reset(keep_sql=keep_sql)  # the statements of the first timed run, when asked for
                    anchor.statements.clear()
                with calls.counted("ours", timed=number >= WARM_UP):
                    ours_s = await ours.gated_action(order_id)
                await ours.check(order_id)
                with calls.counted("anchor", timed=number >= WARM_UP):
                    anchor_s = await anchor.gated_action(order_id)
                if number >= WARM_UP:
                    ours_ms.append(ours_s[0] * 1000)
                    ours_cpu_ms.append(ours_s[1] * 1000)
                    anchor_ms.append(anchor_s[0] * 1000)
                    anchor_cpu_ms.append(anchor_s[1] * 1000)
                if number == WARM_UP and keep_sql:
                    assert meter.sql is not None
                    sql = {step: kept for step, kept in meter.sql.items() if step not in OUTSIDE}
                    meter.sql = None
            anchor_transactions, anchor_statements = anchor.counts()  # before reading the checkpoints back
            checkpoints = await anchor.checkpoints(FIRST_ORDER + WARM_UP)
            meter.enter("check")
    steps = [
        Step(
            step,
            meter.begins[step] / runs,
            meter.commits[step] / runs,
            meter.rollbacks[step] / runs,
            meter.statements[step] / runs,
            meter.seconds[step] * 1000 / runs,
            meter.cpu_seconds[step] * 1000 / runs,
            beside=step == HOME_REDRAWN,
        )
        for step in meter.steps
        if step not in OUTSIDE
    ]
    return Result(
        runs=runs,
        database=_store_name(url),
        steps=steps,
        ours_ms=ours_ms,
        ours_cpu_ms=ours_cpu_ms,
        anchor_ms=anchor_ms,
        anchor_cpu_ms=anchor_cpu_ms,
        anchor_checkpoints=checkpoints,
        anchor_transactions=anchor_transactions / runs,
        anchor_statements=anchor_statements / runs,
        ours_thread_calls=calls.counts["ours"] / runs,
        anchor_thread_calls=calls.counts["anchor"] / runs,
        load=(load_at_start, os.getloadavg()[0]),
        sql=sql,
    )


async def profile(runs: int, database_url: str | None = None) -> str:
    """pyinstrument over ``runs`` of our gated actions (after the warm-up): the call tree's top, the functions
    with the most time of their own, and that time by package."""
    try:
        from pyinstrument import Profiler
    except ImportError:
        raise SystemExit(
            "--profile needs pyinstrument, in the bench extra: pip install -e '.[bench]'"
        ) from None
    with tempfile.TemporaryDirectory(prefix="aios-bench-") as directory:
        url = database_url or f"sqlite+aiosqlite:///{Path(directory) / 'aios.db'}"
        async with our_bot(url, steps=False) as ours:
            profiler = Profiler(interval=0.0005, async_mode="enabled")
            for number in range(WARM_UP + runs):
                await ours.add_order(FIRST_ORDER + number)
                if number >= WARM_UP:  # the sessions of start…stop add up
                    profiler.start()
                await ours.gated_action(FIRST_ORDER + number)
                if number >= WARM_UP:
                    profiler.stop()
                await ours.check(FIRST_ORDER + number)
    session = profiler.last_session
    assert session is not None
    tree = profiler.output_text(unicode=True, processor_options={"filter_threshold": 0.02})
    flat = profiler.output_text(unicode=True, flat=True, flat_time="self")
    return "\n".join(
        [
            f"pyinstrument over {runs} gated actions ({session.duration:.2f} s wall, "
            f"{session.duration * 1000 / runs:.1f} ms each; {session.cpu_time * 1000 / runs:.1f} ms CPU each; "
            f"load average {os.getloadavg()[0]:.1f})",
            "",
            "-- the call tree (frames under 2 % left out) --",
            _head(tree, TREE_LINES),
            "",
            "-- the functions with the most time of their own --",
            _head(flat, FLAT_LINES),
            "",
            "-- time of its own by package --",
            by_package(session.root_frame()),
        ]
    )


TREE_LINES = 100
FLAT_LINES = 30
ROOT = Path(__file__).resolve().parents[1]
# Where a frame's own time is counted: the first of these that its file's path contains.
PACKAGES = (
    ("/sqlalchemy/orm/", "SQLAlchemy ORM"),
    ("/sqlalchemy/", "SQLAlchemy core, engine, dialects"),
    ("/sqlmodel/", "SQLModel"),
    ("/aiosqlite/", "aiosqlite (each call handed to its thread and back)"),
    ("/asyncpg/", "asyncpg"),
    ("/pydantic", "pydantic"),
    ("/structlog/", "structlog"),
    ("/logging/", "logging"),
    ("/cel/", "CEL (policy conditions)"),
    ("/opentelemetry/", "OpenTelemetry (no-op tracer)"),
    ("/prometheus_client/", "Prometheus client"),
    ("/slack_sdk/", "slack_sdk (Block Kit models)"),
    ("/rich/", "rich"),
    ("/numpy/", "numpy"),
    ("/asyncio/", "asyncio event loop"),
    *(
        (f"{ROOT}/{package}/", f"ours: {package}/")
        for package in ("storage", "bot", "agents", "connectors", "policies")
    ),
    (f"{ROOT}/bench/", "the bench itself"),
)


def by_package(root: Any) -> str:
    """The profile's samples by where they were taken: each frame's own time by the package of its file (a
    built-in's, such as a queue's put, by its caller's), and the time the task waited in an await (SQLite in
    aiosqlite's thread, the event loop's turns)."""
    own: Counter[str] = Counter()
    stack: list[tuple[Any, str]] = [(root, "")]
    while stack:
        frame, caller_path = stack.pop()
        path = frame.file_path if frame.file_path not in (None, "<built-in>") else caller_path
        stack.extend((child, path) for child in frame.children)
        if frame.identifier == "[await]":
            own["waiting in an await (SQLite's thread, other tasks)"] += frame.time
        elif frame.identifier == "[self]" or (not frame.children and not frame.is_synthetic):
            own[next((name for part, name in PACKAGES if part in path), "other (stdlib, …)")] += frame.time
    total = sum(own.values()) or 1.0
    return "\n".join(
        f"{seconds / total:6.1%}  {seconds:7.3f} s  {name}" for name, seconds in own.most_common()
    )


def _head(text: str, lines: int) -> str:
    """The first ``lines`` lines of a pyinstrument report, without its banner."""
    kept = text.strip("\n").splitlines()
    kept = kept[next((i for i, line in enumerate(kept) if line[:1].isdigit()), 0) :]
    return "\n".join(kept[:lines] + ([f"… ({len(kept) - lines} more lines)"] if len(kept) > lines else []))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=50, help="timed gated actions of each (default 50)")
    parser.add_argument(
        "--postgres", metavar="URL", help="a PostgreSQL database to create a throwaway one from"
    )
    parser.add_argument("--profile", action="store_true", help="then pyinstrument over --profile-runs runs")
    parser.add_argument("--profile-runs", type=int, default=20)
    parser.add_argument("--statements", action="store_true", help="print the SQL of one run, by step")
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    configure_logging(json=False, level=40)  # as `aios chat`: errors only
    asyncio.run(_run(args.runs, args.postgres, args.statements, args.profile_runs if args.profile else 0))


async def _run(runs: int, postgres: str | None, statements: bool, profile_runs: int) -> None:
    async with AsyncExitStack() as stack:
        url = await stack.enter_async_context(throwaway_database(postgres)) if postgres else None
        result = await measure(runs, url, keep_sql=statements)
    print(result.table())
    for step, sql in (result.sql or {}).items():
        print(f"\n-- {step} --")
        print("\n".join(sql))
    if profile_runs:
        async with AsyncExitStack() as stack:
            url = await stack.enter_async_context(throwaway_database(postgres)) if postgres else None
            print()
            print(await profile(profile_runs, url))


if __name__ == "__main__":
    main()
