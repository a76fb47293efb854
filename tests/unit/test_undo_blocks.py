"""The "Done" message of an action that has an inverse: an Undo button carrying only the action id, in Slack
and as the terminal shows it. Snapshot regenerated deliberately with AIOS_UPDATE_SNAPSHOTS=1."""

from __future__ import annotations

import io

from rich.console import Console

from bot.blocks import done, notice
from bot.console import ConsoleTransport, render
from connectors.actions import ShopifyAdjustInventory
from runtime.notices import Done, ReportedFailed, Thread
from tests.unit.test_blocks import check_snapshot

TEXT = ":white_check_mark: Done: Publish post spring-lookbook now. (slug: spring-lookbook, status: published)"
CONTEXT = "`E-5` · `A-3` · `/aios why A-3` explains it"


def test_done_with_undo_snapshot() -> None:
    check_snapshot("done_with_undo", done(TEXT, CONTEXT, undo="A-3"))


def test_the_undo_button_carries_only_the_action_id() -> None:
    _, blocks = done(TEXT, CONTEXT, undo="A-3")
    [actions] = [b for b in blocks if b["type"] == "actions"]
    assert [(e["action_id"], e["value"]) for e in actions["elements"]] == [("aios_undo", "A-3")]


def test_without_an_inverse_the_done_message_is_a_plain_notice() -> None:
    assert done(TEXT, CONTEXT) == notice(TEXT, CONTEXT)


def test_the_terminal_names_the_command_that_undoes_it() -> None:
    assert render(*done(TEXT, CONTEXT, undo="A-3")).splitlines()[1:] == [
        "[ Undo ]   (type: /aios undo A-3)",
        "  `E-5` · `A-3` · `/aios why A-3` explains it · `/aios undo A-3` takes it back",
    ]


AFTER_ALL = (
    ":warning: This took effect after all, after it was reported failed. The run's earlier steps were undone "
    "after a failure (A-1, A-4 (being undone)): ask again for what should still be done. Earlier steps that "
    "cannot be undone were handed to a person after a failure (A-2)."
)
REPORTED = ReportedFailed(undone=("A-1",), being_undone=("A-4",), handed_to_a_person=("A-2",))


def test_a_done_told_failed_before_says_first_it_took_effect_after_all_and_where_earlier_steps_stand() -> (
    None
):
    text, blocks = done(TEXT, CONTEXT, undo="A-3", reported_failed=REPORTED)
    assert text == f"{AFTER_ALL}\n{TEXT}"  # the notification's text too
    assert blocks[0]["text"]["text"] == text
    assert done(TEXT, CONTEXT, reported_failed=ReportedFailed())[0] == (
        f":warning: This took effect after all, after it was reported failed.\n{TEXT}"
    )


def test_the_warning_survives_a_result_too_long_for_slack() -> None:
    text, blocks = done(f"{TEXT} ({'x' * 5000})", CONTEXT, reported_failed=REPORTED)
    assert text.startswith(AFTER_ALL) and blocks[0]["text"]["text"].startswith(AFTER_ALL)


async def test_the_terminal_shows_it_too() -> None:
    out = io.StringIO()
    transport = ConsoleTransport(Console(file=out, width=400))
    await transport.report_done(Thread("console", None), Done(TEXT, CONTEXT, reported_failed=REPORTED))
    assert "This took effect after all, after it was reported failed." in out.getvalue()
    assert "undone after a failure (A-1, A-4 (being undone))" in out.getvalue()
    assert "handed to a person after a failure (A-2)" in out.getvalue()


def test_an_inventory_change_is_undone_by_the_opposite_change_at_the_same_place() -> None:
    taken = ShopifyAdjustInventory(sku="MUG-1", delta=-3, reason="damaged", location="Warehouse")
    assert taken.inverse({}) == ShopifyAdjustInventory(
        sku="MUG-1", delta=3, reason="correction", location="Warehouse"
    )
