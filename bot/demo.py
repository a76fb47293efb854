"""`aios demo`: the e-commerce and content scenarios, scripted, on a fresh embedded store."""

from __future__ import annotations

import tempfile
from pathlib import Path

from rich.console import Console
from rich.rule import Rule

from bot.bootstrap import bootstrap
from bot.console import ConsoleSession, ConsoleTransport
from bot.settings import Settings
from connectors.sandbox_state import sandbox_state

REQUESTER = "U0ALICE"  # support, asks for the refund
TEAMMATE = "U0BOB"  # support, not a manager
MANAGER = "U0MANAGER"
WRITER = "U0CAROL"  # marketing, writes posts but may not publish them alone
EDITOR = "U0EDITOR"
PLANNED_SLOTS = 2  # the calendar scene plans two posts, approved together by the editor with Approve all


class DemoFailedError(RuntimeError):
    """The scenario did not end as it must (for example, not exactly one refund)."""


async def run_demo(console: Console) -> None:
    with tempfile.TemporaryDirectory(prefix="aios-demo-") as workdir:
        # The demo always uses the packaged policy and a throwaway database, whatever the environment says.
        settings = Settings(
            AIOS_DATABASE_URL=f"sqlite+aiosqlite:///{Path(workdir) / 'demo.db'}", AIOS_POLICY_FILE=None
        )
        transport = ConsoleTransport(console)
        aios = await bootstrap(settings, transport)
        try:
            await _scenario(console, ConsoleSession(aios, transport))
            state = await sandbox_state(aios.units)
        finally:
            await aios.close()
    _check(console, state)


async def _scenario(console: Console, thread: ConsoleSession) -> None:
    console.print(Rule("A refund that needs a manager"))
    await thread.say(REQUESTER, "refund order 1001, $250, arrived broken")
    await thread.click(TEAMMATE, approve=True)
    await thread.click(REQUESTER, approve=True)
    await thread.click(MANAGER, approve=True)
    await thread.click(MANAGER, approve=True, approval="AP-1")  # a second click changes nothing

    console.print(Rule("Why did that happen?"))
    await thread.slash(REQUESTER, "why A-1")

    console.print(Rule("A small refund goes straight through"))
    await thread.say(REQUESTER, "refund $40 on order 1002, the strap tore")

    console.print(Rule("Content: a writer's draft, published after an editor's review"))
    await thread.say(WRITER, 'draft a post titled "Spring lookbook"')
    await thread.say(WRITER, "publish post spring-lookbook")
    await thread.click(EDITOR, approve=True)
    await thread.slash(EDITOR, "status")

    console.print(Rule("Content calendar: next month planned, approved, shown"))
    await thread.slash(WRITER, "plan next month: 2 posts about winter care, on Tuesdays")
    await thread.click_all(EDITOR, approve=True)  # one review card for the month
    await thread.slash(WRITER, "calendar next month")


def _check(console: Console, state: dict[str, list[dict[str, object]]]) -> None:
    console.print(Rule("Sandbox state"))
    for refund in state["refunds"]:
        console.print(f"refund re_{refund['id']}: order {refund['order_id']}, ${refund['amount']:.2f}")
    for post in state["posts"]:
        console.print(f"post {post['slug']}: {post['status']}")
    big = [r for r in state["refunds"] if r["order_id"] == 1001]
    small = [r for r in state["refunds"] if r["order_id"] == 1002]
    published = [p for p in state["posts"] if p["status"] == "published"]
    planned = [p for p in state["posts"] if str(p["body"]).startswith("Angle: ")]
    if len(big) != 1 or len(small) != 1 or len(published) != 1 or len(planned) != PLANNED_SLOTS:
        raise DemoFailedError(
            f"expected one refund on 1001, one on 1002, one published post and {PLANNED_SLOTS} planned drafts; "
            f"got {len(big)}, {len(small)}, {len(published)}, {len(planned)}"
        )
    console.print("[green]Demo finished: exactly one refund per approved request, nothing ran unapproved.[/]")
