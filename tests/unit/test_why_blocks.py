"""`/aios why` as Block Kit: the explanation within Slack's limits, and a button for each related record."""

from __future__ import annotations

from typing import Any

from slack_sdk.models.blocks import Block

from bot.console import render
from bot.explain import RelatedRecords
from bot.why_blocks import WHY_SECTIONS_MAX, why_message

WHY = "*Why — R-3* (run completed)\n• *Intent* `I-3`: <@U0ALICE> asked “refund”\n  – execution `E-4` *succeeded*"
RELATED = RelatedRecords(run="R-3", approval="AP-2", execution="E-4")


def valid(blocks: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The blocks as slack_sdk builds them again from their JSON, which validates them, within Slack's limits."""
    assert [block.to_dict() for block in Block.parse_all(blocks)] == blocks
    assert len(blocks) <= 50
    for block in blocks:
        if block["type"] == "section":
            assert 0 < len(block["text"]["text"]) <= 3000
        for element in block.get("elements", []):
            assert len(element.get("value", "")) <= 2000
    return blocks


def buttons(blocks: list[dict[str, Any]]) -> list[tuple[str, str, str]]:
    return [
        (e["text"]["text"], e["action_id"], e["value"])
        for b in blocks
        if b["type"] == "actions"
        for e in b["elements"]
    ]


def test_an_action_level_why_opens_its_run_approval_and_execution() -> None:
    text, blocks = why_message("A-5", WHY, RELATED)
    assert text == WHY
    assert buttons(valid(blocks)) == [
        ("Run R-3", "aios_why_open_run", "R-3"),
        ("Approval AP-2", "aios_why_open_approval", "AP-2"),
        ("Execution E-4", "aios_why_open_execution", "E-4"),
    ]
    assert blocks[0]["text"]["text"] == WHY


def test_no_button_opens_the_record_already_explained_or_one_there_is_not() -> None:
    _, blocks = why_message("AP-2", WHY, RelatedRecords(run="R-3", approval="AP-2"))
    assert buttons(valid(blocks)) == [("Run R-3", "aios_why_open_run", "R-3")]
    _, alone = why_message("R-3", WHY, RelatedRecords(run="R-3"))
    assert [b["type"] for b in valid(alone)] == ["section"]


def test_a_long_explanation_is_cut_into_sections_and_past_slacks_blocks_says_where_to_read_it_all() -> None:
    lines = [f"  – `D-{n}` policy verdict *allow* " + "x" * 700 for n in range(400)]
    lines.insert(3, "y" * 5000)  # one line longer than a section: cut with …
    text, blocks = why_message("R-3", "\n".join(lines), RELATED)
    valid(blocks)
    sections = [b for b in blocks if b["type"] == "section"]
    assert len(sections) == WHY_SECTIONS_MAX + 1
    assert sections[-1]["text"]["text"].startswith(
        "_The rest is longer than a Slack message takes; `aios why R-3`"
    )
    assert sections[0]["text"]["text"].splitlines()[:3] == lines[:3]
    assert any(s["text"]["text"].endswith("y…") or "y…\n" in s["text"]["text"] for s in sections)
    assert blocks[-1]["type"] == "actions"
    assert len(text) <= 40_000


def test_the_terminal_shows_the_buttons_as_the_commands_they_stand_for() -> None:
    assert render(*why_message("A-5", WHY, RELATED)).splitlines()[-1] == (
        "[ Run R-3 ]  [ Approval AP-2 ]  [ Execution E-4 ]   "
        "(type: /aios why R-3 or /aios why AP-2 or /aios why E-4)"
    )
