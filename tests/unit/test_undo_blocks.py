"""The "Done" message of an action that has an inverse: an Undo button carrying only the action id, in Slack
and as the terminal shows it. Snapshot regenerated deliberately with AIOS_UPDATE_SNAPSHOTS=1."""

from __future__ import annotations

from bot.blocks import done, notice
from bot.console import render
from connectors.actions import ShopifyAdjustInventory
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


def test_an_inventory_change_is_undone_by_the_opposite_change_at_the_same_place() -> None:
    taken = ShopifyAdjustInventory(sku="MUG-1", delta=-3, reason="damaged", location="Warehouse")
    assert taken.inverse({}) == ShopifyAdjustInventory(
        sku="MUG-1", delta=3, reason="correction", location="Warehouse"
    )
