"""A click as the Slack front door takes one, stored before its ack and then decided: deciding it and marking it
processed are one transaction, so a click is never decided without being marked (nor marked without being
decided), and a stored click handed twice (a recovery at start beside the live process) is decided once."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import event
from sqlmodel import select

from bot.bootstrap import Aios
from runtime.intake import accept_click
from runtime.messages import ActionApproved, DecideApproval
from storage.records import Approval, Click, Decision
from tests.fakes.slack_api import FakeSlackApi
from tests.integration.conftest import CHANNEL, MANAGER, ask


async def waiting_approval(aios: Aios) -> Approval:
    await ask(aios, "refund order 1001, $250, arrived broken")  # over $100: a manager approves it
    await aios.home.settle()  # the App Home's redraws the request set off, done before anything is counted
    async with aios.units() as uow:
        [approval] = (await uow.session.exec(select(Approval))).all()
    assert approval.id is not None and approval.status == "pending"
    return approval


@contextmanager
def transactions(aios: Aios) -> Iterator[list[str]]:
    """The transactions begun while it is open, each by its writes (the statements other than SELECT)."""
    begun: list[str] = []

    def began(_conn: Any) -> None:
        begun.append("")

    def sent(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        if begun and not statement.startswith(("BEGIN", "SELECT")):
            begun[-1] += " ".join(statement.split()[:3]) + "; "

    engine = aios.engine.sync_engine
    event.listen(engine, "begin", began)
    event.listen(engine, "before_cursor_execute", sent)
    try:
        yield begun
    finally:
        event.remove(engine, "begin", began)
        event.remove(engine, "before_cursor_execute", sent)


async def stored_click(aios: Aios, approval_id: int) -> int:
    return await accept_click(
        aios.units, Click(approval_id=approval_id, user=MANAGER, approve=True, channel=CHANNEL)
    )


async def test_a_stored_click_is_decided_and_marked_processed_in_one_transaction(aios: Aios) -> None:
    approval = await waiting_approval(aios)
    assert approval.id is not None

    with transactions(aios) as begun:
        click_id = await stored_click(aios, approval.id)
        decide = DecideApproval(approval.id, MANAGER, True, CHANNEL, click_id=click_id)
        follow_ups = await aios.handlers.approvals.decide_approval(decide)

    [approved] = follow_ups
    assert isinstance(approved, ActionApproved) and approved.action_id == approval.action_id
    assert approved.claimed is not None
    # The click stored; the click decided, with its mark and the execution's claim.
    assert len(begun) == 2, begun
    assert begun[0].startswith("INSERT INTO click")
    assert "UPDATE click SET" in begun[1] and "UPDATE approval SET" in begun[1]
    assert "INSERT INTO execution;" in begun[1]
    async with aios.units() as uow:
        click = await uow.get(Click, click_id)
        decided = await uow.get(Approval, approval.id)
    assert click is not None and click.processed_at is not None
    assert decided is not None and (decided.status, decided.decided_by) == ("approved", MANAGER)


async def test_a_stored_click_handed_again_after_it_was_decided_changes_nothing_and_says_nothing(
    aios: Aios, slack_api: FakeSlackApi
) -> None:
    """As at start, when recovery hands again every stored click, one a live process is deciding right then
    included: whichever of the two decides it first, the other finds it marked and leaves it."""
    approval = await waiting_approval(aios)
    assert approval.id is not None
    click_id = await stored_click(aios, approval.id)
    recovered = DecideApproval(approval.id, MANAGER, True, CHANNEL, click_id=click_id, recovered=True)
    assert await aios.handlers.approvals.decide_approval(recovered) == [ActionApproved(approval.action_id)]

    live = DecideApproval(approval.id, MANAGER, True, CHANNEL, click_id=click_id)
    assert await aios.handlers.approvals.decide_approval(live) == []

    async with aios.units() as uow:
        decisions = (await uow.session.exec(select(Decision.kind, Decision.actor))).all()
    assert sorted(decisions) == [("human", MANAGER), ("policy", "policy")]
    assert slack_api.calls_to("chat.postEphemeral") == []
