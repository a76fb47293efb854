"""The console transport: one Slack thread in the terminal, for `aios chat` and `aios demo`.

Messages go through the same bus, handlers and Block Kit builders as in Slack (the runtime's notices drawn as
in Slack, ``bot.block_kit_notices``); only the rendering differs.
"""

from __future__ import annotations

import asyncio
import re
import time
from dataclasses import dataclass, field
from typing import Any

from rich.console import Console
from rich.markup import escape

from agents.context import ThreadEntry
from bot.block_kit_notices import BlockKitNotices
from bot.blocks import EDIT_ACTION_ID, REQUEST_BUDGET_ACTION_ID, TAKE_OVER_ACTION_ID, UNDO_ACTION_ID
from bot.bootstrap import Aios
from bot.console_edit import EditLineError, edited_params, parse_edit
from bot.content_calendar import calendar_answer
from bot.prompt import Prompt
from bot.queries import private_answer
from bot.rejection_reasons import accept_reason
from bot.run_review import APPROVE_ALL_ACTION_ID
from bot.slash import bus_command, parse_slash
from bot.terminal import CONSOLE_CHANNEL, CONSOLE_TEAM, INTERRUPTED
from bot.undo import ask_undo, file_undo
from bot.why_blocks import WHY_OPEN_PREFIX
from runtime.intake import IncomingIntent, accept_edit
from runtime.messages import (
    DecideApproval,
    DecideRun,
    EditApproval,
    HandleIntent,
    PublishDuePosts,
    RequestBudget,
    ReviseRejected,
    SweepTimers,
)
from runtime.mrkdwn import unescape
from storage.ids import UnknownIdError, format_id, parse_id
from storage.records import Approval, ProposedAction


@dataclass
class PostedMessage:
    channel: str
    ts: str
    text: str
    blocks: list[dict[str, Any]] | None
    thread_ts: str | None
    user: str | None = None  # None: the bot


@dataclass
class ConsoleTransport(BlockKitNotices):
    console: Console
    messages: list[PostedMessage] = field(default_factory=list)
    groups: dict[str, set[str]] = field(default_factory=dict)
    # Each person's App Home as last published: the terminal has no tab to show it in.
    homes: dict[str, dict[str, Any]] = field(default_factory=dict)
    views: dict[str, dict[str, Any]] = field(default_factory=dict)  # modals opened, by view id
    _last_ts_micros: int = 0

    async def post(
        self,
        channel: str,
        text: str,
        *,
        blocks: list[dict[str, Any]] | None = None,
        thread_ts: str | None = None,
    ) -> str:
        ts = self._next_ts()
        self.messages.append(PostedMessage(channel, ts, text, blocks, thread_ts))
        self._print("aios", render(text, blocks))
        return ts

    async def update(
        self, channel: str, ts: str, text: str, *, blocks: list[dict[str, Any]] | None = None
    ) -> None:
        for message in self.messages:
            if message.ts == ts:
                message.text, message.blocks = text, blocks
        self._print("aios (updated its approval request)", render(text, blocks))

    async def post_ephemeral(
        self,
        channel: str,
        user: str,
        text: str,
        *,
        thread_ts: str | None = None,
        blocks: list[dict[str, Any]] | None = None,
    ) -> None:
        self._print(f"aios → only {user} sees this", render(text, blocks))

    async def thread_history(self, channel: str, thread_ts: str) -> list[ThreadEntry]:
        return [
            ThreadEntry(m.ts, m.user or "", m.text, from_bot=m.user is None)
            for m in self.messages
            if m.channel == channel and thread_ts in (m.ts, m.thread_ts)
        ]

    async def note_user_message(self, channel: str, user: str, text: str, thread_ts: str | None) -> str:
        """People's messages are part of the thread too (Slack keeps them; the console must remember them)."""
        ts = self._next_ts()
        self.messages.append(PostedMessage(channel, ts, text, None, thread_ts, user))
        return ts

    async def group_members(self, group_id: str) -> set[str]:
        return self.groups.get(group_id, set())

    async def open_view(self, trigger_id: str, view: dict[str, Any]) -> str:
        view_id = f"V{len(self.views) + 1:08d}"
        self.views[view_id] = view
        self._print(f"aios (a dialog: {_view_title(view)})", render("", view.get("blocks")))
        return view_id

    async def update_view(self, view_id: str, view: dict[str, Any]) -> None:
        self.views[view_id] = view
        self._print(f"aios (the dialog now: {_view_title(view)})", render("", view.get("blocks")))

    async def publish_home(self, user: str, view: dict[str, Any]) -> None:
        self.homes[user] = view

    def _next_ts(self) -> str:
        # Slack-style "seconds.micros" from the wall clock, so a new `aios chat` never reuses an older
        # session's thread ts (its approvals would then look like this thread's).
        micros = max(time.time_ns() // 1000, self._last_ts_micros + 1)
        self._last_ts_micros = micros
        return f"{micros // 1_000_000}.{micros % 1_000_000:06d}"

    def _print(self, who: str, body: str) -> None:
        self.console.print(f"[bold cyan]{escape(who)}[/]")
        for line in body.splitlines():
            self.console.print(f"  {escape(line)}", highlight=False, soft_wrap=True)


def _view_title(view: dict[str, Any]) -> str:
    title = view.get("title")
    return str(title.get("text", "")) if isinstance(title, dict) else ""


_ITALIC = re.compile(r"(?<![\w_])_([^_\n]+)_(?![\w_])")
# A mrkdwn quote line (an email body on a card); a `>` that someone wrote is still escaped at this point.
_QUOTE_LINE = re.compile(r"^>", re.MULTILINE)


def render(text: str, blocks: list[dict[str, Any]] | None) -> str:
    """Block Kit as a person would read it in a terminal."""
    if not blocks:
        return _plain(text)
    lines: list[str] = []
    for block in blocks:
        kind = block.get("type")
        if kind in ("header", "section"):
            lines.append(_plain(block["text"]["text"]))
        elif kind == "context":
            lines.append("  " + " ".join(_plain(e.get("text", "")) for e in block["elements"]))
        elif kind == "actions":
            buttons = "  ".join(f"[ {e['text']['text']} ]" for e in block["elements"])
            budget = any(e.get("action_id") == REQUEST_BUDGET_ACTION_ID for e in block["elements"])
            undo = next((e["value"] for e in block["elements"] if e.get("action_id") == UNDO_ACTION_ID), None)
            take = next(
                (e["value"] for e in block["elements"] if e.get("action_id") == TAKE_OVER_ACTION_ID), None
            )
            review = any(e.get("action_id") == APPROVE_ALL_ACTION_ID for e in block["elements"])
            edit = next((e["value"] for e in block["elements"] if e.get("action_id") == EDIT_ACTION_ID), None)
            why = [
                e["value"] for e in block["elements"] if str(e.get("action_id")).startswith(WHY_OPEN_PREFIX)
            ]
            if why:
                hint = " or ".join(f"/aios why {record}" for record in why)
            elif undo is not None:
                hint = f"/aios undo {undo}"
            elif review:
                hint = "approve all as <user> / reject all as <user>"
            elif take is not None:
                hint = f"/aios take {take}"
            elif edit is not None:
                hint = f"approve as <user> / reject as <user> / edit {edit} field=value as <user>"
            else:
                hint = "request budget" if budget else "approve as <user> / reject as <user>"
            lines.append(f"{buttons}   (type: {hint})")
    return "\n".join(lines)


def _plain(text: str) -> str:
    text = re.sub(r"<@([A-Z0-9]+)>", r"@\1", text)
    text = _ITALIC.sub(r"\1", text)  # _words_ are italics in mrkdwn, not underscores to show
    text = _QUOTE_LINE.sub("  │ ", text)
    return unescape(text.replace("```", "").replace("*", ""))  # what others wrote, as they wrote it


class ConsoleSession:
    """One thread in the terminal: intents, `/aios` commands and approval clicks from named users.

    Clicks without an id, and "request budget", only ever reach requests of this thread; a new session is
    a new thread. An approval named by its id is clicked wherever it is, as a button in its own thread would be.
    """

    def __init__(self, aios: Aios, transport: ConsoleTransport) -> None:
        self.aios = aios
        self.transport = transport
        self.thread_ts: str | None = None

    async def say(self, user: str, text: str) -> None:
        self._echo(user, text)
        await self._intent("console", user, text)

    async def slash(self, user: str, text: str) -> None:
        self._echo(user, f"/aios {text}")
        command = parse_slash(text)
        if command.name == "intent":
            await self._intent("slash", user, command.argument)
            return
        if command.name == "undo":
            answer = await ask_undo(self.aios, command.argument, user)
            await self.transport.post_ephemeral(CONSOLE_CHANNEL, user, answer.text)
            if answer.filing is not None and (problem := await file_undo(self.aios, answer.filing)):
                await self.transport.post_ephemeral(CONSOLE_CHANNEL, user, problem)
            return
        if command.name == "calendar":
            aios = self.aios
            reply, blocks = await calendar_answer(
                aios.units, aios.registry, aios.settings.zone, aios.clock(), CONSOLE_TEAM, command.argument
            )
            await self.transport.post_ephemeral(CONSOLE_CHANNEL, user, reply, blocks=blocks)
            return
        control = bus_command(command, team=CONSOLE_TEAM, user=user, channel=CONSOLE_CHANNEL)
        if control is not None:
            await self.aios.process(control)
            return
        reply, blocks = await private_answer(
            self.aios.units, command, self.aios.clock(), self.aios.settings.candidate_policy_file
        )
        await self.transport.post_ephemeral(CONSOLE_CHANNEL, user, reply, blocks=blocks)

    async def _intent(self, source: str, user: str, text: str) -> None:
        if self.thread_ts is None:
            self.thread_ts = await self.transport.post(CONSOLE_CHANNEL, f"Thread started by <@{user}>")
        message_ts = await self.transport.note_user_message(CONSOLE_CHANNEL, user, text, self.thread_ts)
        incoming = IncomingIntent(
            source=source,
            team_id=CONSOLE_TEAM,
            channel=CONSOLE_CHANNEL,
            thread_ts=self.thread_ts,
            user=user,
            text=text,
            message_ts=message_ts,
        )
        intent_id = await self.aios.accept(incoming)
        assert intent_id is not None  # console intents carry no delivery key, so none is a duplicate
        await self.aios.process(HandleIntent(intent_id))

    async def click(self, user: str, *, approve: bool, approval: str | None = None) -> None:
        """Press Approve or Reject on the named approval request, or on this thread's newest one still waiting."""
        self.transport.console.print(
            f"[bold magenta]{escape(user)}[/] clicks [bold]{'Approve' if approve else 'Reject'}[/]"
            + (f" on {escape(approval)}" if approval else "")
        )
        approval_id = await self._named_approval(approval) if approval else await self._newest_waiting()
        if approval_id is None:
            self.transport.console.print("  (there is no approval request waiting in this thread)")
            return
        await self.aios.process(DecideApproval(approval_id, user, approve, CONSOLE_CHANNEL))

    async def click_all(self, user: str, *, approve: bool) -> None:
        """Press Approve all or Reject all on the review card of this thread's newest run still waiting."""
        self.transport.console.print(
            f"[bold magenta]{escape(user)}[/] clicks [bold]{'Approve all' if approve else 'Reject all'}[/]"
        )
        approval_id = await self._newest_waiting()
        async with self.aios.units() as uow:
            approval = await uow.get(Approval, approval_id) if approval_id is not None else None
            proposed = await uow.get(ProposedAction, approval.action_id) if approval else None
        if proposed is None:
            self.transport.console.print("  (there is no approval request waiting in this thread)")
            return
        await self.aios.process(DecideRun(proposed.run_id, user, approve, CONSOLE_CHANNEL))

    async def _newest_waiting(self) -> int | None:
        if self.thread_ts is None:
            return None
        async with self.aios.units() as uow:
            waiting = await uow.approvals.pending_approvals_in_thread(CONSOLE_CHANNEL, self.thread_ts)
        return waiting[-1].id if waiting else None

    async def _named_approval(self, approval: str) -> int:
        prefix, key = parse_id(approval)
        if prefix != "AP":
            raise UnknownIdError(f"{approval} is not an approval id; approval ids look like AP-3")
        async with self.aios.units() as uow:
            found = await uow.get(Approval, key)
        if found is not None and found.thread_ts != self.thread_ts:
            self.transport.console.print(
                f"  ({format_id('AP', key)} belongs to another thread; the click is made there)"
            )
        return key

    async def reject_because(self, user: str, reason: str, *, approval: str | None = None) -> None:
        """Reject the named request (or this thread's newest waiting one) as the button does, then say why as
        the dialog that follows it does."""
        approval_id = await self._named_approval(approval) if approval else await self._newest_waiting()
        if approval_id is None:
            self.transport.console.print("  (there is no approval request waiting in this thread)")
            return
        ref = format_id("AP", approval_id)
        self.transport.console.print(
            f"[bold magenta]{escape(user)}[/] clicks [bold]Reject[/] on {ref} and says why: {escape(reason)}"
        )
        await self.aios.process(DecideApproval(approval_id, user, False, CONSOLE_CHANNEL))
        answer = await accept_reason(
            self.aios.units, approval_id, user, reason, received_by=self.aios.lease.id
        )
        if answer is None:
            return
        if answer.reason_id is None:
            await self.transport.post_ephemeral(CONSOLE_CHANNEL, user, answer.problem or "")
            return
        await self.aios.process(ReviseRejected(approval_id, user, CONSOLE_CHANNEL, answer.reason_id))

    async def edit(self, user: str, argument: str) -> None:
        """Save an edit of the named request (or this thread's newest waiting one) as the Edit dialog does:
        the fields typed, read as their parameters ask, over the current ones; a problem is said privately and
        nothing is submitted."""
        try:
            line = parse_edit(argument)
            user = line.user or user
            approval_id = (
                await self._named_approval(line.approval) if line.approval else await self._newest_waiting()
            )
            if approval_id is None:
                self.transport.console.print("  (there is no approval request waiting in this thread)")
                return
            async with self.aios.units() as uow:
                approval = await uow.get(Approval, approval_id)
                proposed = await uow.get(ProposedAction, approval.action_id) if approval else None
            if proposed is None:
                raise EditLineError(f"There is no approval {format_id('AP', approval_id)}.")
            params = edited_params(self.aios.registry, proposed.name, proposed.params, line.changes)
        except EditLineError as exc:
            await self.transport.post_ephemeral(CONSOLE_CHANNEL, user, str(exc))
            return
        changes = " ".join(f"{name}={value}" for name, value in line.changes.items())
        self.transport.console.print(
            f"[bold magenta]{escape(user)}[/] edits {format_id('AP', approval_id)}: {escape(changes)}"
        )
        edit_id = await accept_edit(
            self.aios.units, approval_id, user, params, CONSOLE_CHANNEL, owner=self.aios.lease.id
        )
        await self.aios.process(EditApproval(approval_id, user, params, CONSOLE_CHANNEL, edit_id=edit_id))

    async def request_budget(self, user: str) -> None:
        """Press "Request budget" on the newest run in this thread that its budget stopped."""
        self.transport.console.print(f"[bold magenta]{escape(user)}[/] clicks [bold]Request budget[/]")
        run_id = None
        if self.thread_ts is not None:
            async with self.aios.units() as uow:
                run_id = await uow.runs.newest_run_over_budget_in_thread(CONSOLE_CHANNEL, self.thread_ts)
        if run_id is None:
            self.transport.console.print("  (no run in this thread is waiting for budget)")
            return
        await self.aios.process(RequestBudget(run_id, user, CONSOLE_CHANNEL))

    async def handle(self, user: str, line: str) -> str:
        """One typed line; returns who speaks from now on."""
        try:
            if click_all := _CLICK_ALL.match(line):
                await self.click_all(
                    click_all.group(2) or user, approve=click_all.group(1).lower() == "approve"
                )
            elif because := _REJECT_BECAUSE.match(line):
                await self.reject_because(
                    because.group(3) or user, because.group(2).strip(), approval=because.group(1)
                )
            elif edit := _EDIT.match(line):
                await self.edit(user, edit.group(1))
            elif click := _CLICK.match(line):
                await self.click(
                    click.group(3), approve=click.group(1).lower() == "approve", approval=click.group(2)
                )
            elif switch := _SWITCH.match(line):
                return switch.group(1)
            elif _BUDGET.match(line):
                await self.request_budget(user)
            elif line.startswith("/aios"):
                await self.slash(user, line.removeprefix("/aios"))
            else:
                await self.say(user, line)
        except UnknownIdError as exc:
            self.transport.console.print(f"[red]{escape(str(exc))}[/]")
        return user

    def _echo(self, user: str, text: str) -> None:
        self.transport.console.print(f"[bold magenta]{escape(user)}[/]: {escape(text)}")


_CLICK = re.compile(r"^(approve|reject)(?:\s+(AP-\d+))?\s+as\s+(\S+)\s*$", re.IGNORECASE)
_CLICK_ALL = re.compile(r"^(approve|reject)\s+all(?:\s+as\s+(\S+))?\s*$", re.IGNORECASE)
# `reject AP-3 because …` or `reject because …`, optionally ending `as U0MANAGER` (a Slack user id, in capitals,
# so that a reason's own "as" stays in the reason).
_REJECT_BECAUSE = re.compile(
    r"^reject(?:\s+(AP-\d+))?\s+because\s+(.+?)(?:\s+as\s+((?-i:[A-Z][A-Z0-9]+)))?\s*$",
    re.IGNORECASE | re.DOTALL,
)
# `edit AP-3 amount=40 reason="only the broken mug" as U0MANAGER`: a field=value first, so that an intent
# starting with "edit" is still an intent.
_EDIT = re.compile(r"^edit\s+((?:AP-\d+\s+)?[^\s=]+=.*)$", re.IGNORECASE | re.DOTALL)
_SWITCH = re.compile(r"^as\s+(\S+)\s*$", re.IGNORECASE)
_BUDGET = re.compile(r"^request\s+budget\s*$", re.IGNORECASE)

CHAT_HELP = """A new thread. Type an intent as you would in Slack, e.g. `refund order 1001, $250, arrived broken`.
  /aios …                  a slash command (`/aios help`, `/aios why D-1`, `/aios pending`)
  approve as U0MANAGER     click Approve on this thread's newest waiting request as that user
  approve AP-2 as …        click Approve on AP-2, wherever it is (`/aios pending` lists them all)
  reject as U0MANAGER      click Reject
  reject AP-2 because …    click Reject and say why (`… as U0MANAGER` too): the agent plans once more with it
  edit AP-2 amount=40 …    change AP-2's parameters as its Edit dialog does (`reason="…"`, `… as U0MANAGER`
                           too; without an id, this thread's newest request): the policy judges it again
  approve all as U0EDITOR  click Approve all on the review card of this thread's newest run (reject all too)
  request budget           click Request budget on a run of this thread its budget stopped
  /aios undo A-3           click Undo on A-3's "Done" message: ask to take it back
  as U0BOB                 speak as another user from now on
  quit                     leave (or Ctrl-D; Ctrl-C stops at once)"""


async def _catch_up(aios: Aios) -> None:
    """The timers `aios serve` runs on a schedule (approvals that expired, posts that fell due): no scheduler
    runs while the prompt waits outside the event loop, so what fell due meanwhile is swept at start and
    before each line."""
    await aios.process(SweepTimers())
    await aios.process(PublishDuePosts())


def run_chat(runner: asyncio.Runner, aios: Aios, transport: ConsoleTransport, user: str) -> int:
    """The prompt loop; returns the exit code.

    The prompt is read outside the event loop and each line runs to completion in ``runner``: Ctrl-C at the
    prompt is then a plain KeyboardInterrupt, and during a line the runner cancels it, so either way the
    caller closes the store cleanly instead of dying mid-`await`.
    """
    session = ConsoleSession(aios, transport)
    console = transport.console
    console.print(CHAT_HELP, highlight=False, markup=False)
    try:
        with Prompt(console) as prompt:
            runner.run(_catch_up(aios))
            while True:
                try:
                    line = prompt.read(f"[bold magenta]{escape(user)}[/]> ").strip()
                except EOFError:
                    console.print()
                    return 0
                if line.lower() in ("quit", "exit"):
                    return 0
                if line:
                    runner.run(_catch_up(aios))
                    user = runner.run(session.handle(user, line))
    except KeyboardInterrupt:
        console.print()
        return INTERRUPTED
