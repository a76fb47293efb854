"""Snapshot of the Block Kit JSON. Regenerate deliberately with AIOS_UPDATE_SNAPSHOTS=1 and review the diff."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from slack_sdk.models.blocks import ConfirmObject, SectionBlock

from bot.blocks import approval_closed, approval_request, notice
from bot.console import render
from runtime.mrkdwn import escape, truncate
from runtime.notices import ApprovalCard

SNAPSHOTS = Path(__file__).parent / "snapshots"
CARD = ApprovalCard(
    approval_id="AP-7",
    action_id="A-12",
    decision_id="D-31",
    summary="Refund $250.00 on order 1001 (arrived broken)",
    params={"order_id": 1001, "amount": 250.0, "reason": "arrived broken"},
    rationale="The customer reports the item arrived broken.",
    rule_id="refunds-over-100-need-a-manager",
    reason="refunds over $100 need a manager's approval",
    approver_roles=("manager",),
    requester="U0ALICE",
    expires_at=datetime(2026, 11, 24, 16, 0, tzinfo=UTC),
)


def check_snapshot(name: str, message: tuple[str, list[dict[str, Any]]]) -> None:
    text, blocks = message
    rendered = json.dumps({"text": text, "blocks": blocks}, indent=2, sort_keys=True) + "\n"
    path = SNAPSHOTS / f"{name}.json"
    if os.environ.get("AIOS_UPDATE_SNAPSHOTS") == "1":
        path.write_text(rendered)
    if not path.exists():
        pytest.fail(f"no snapshot {path}; run with AIOS_UPDATE_SNAPSHOTS=1 once and review it")
    assert rendered == path.read_text()


def test_approval_request_snapshot() -> None:
    check_snapshot("approval_request", approval_request(CARD))


def test_approval_closed_snapshot() -> None:
    check_snapshot(
        "approval_approved",
        approval_closed(CARD, "approved", "U0MANAGER", datetime(2026, 11, 24, 13, 5, tzinfo=UTC)),
    )


def test_notice_snapshot() -> None:
    check_snapshot("notice", notice("Allowed by policy: Refund $40.00 on order 1002.", "`A-3` · `D-4`"))


def test_buttons_carry_only_the_record_id() -> None:
    _, blocks = approval_request(CARD)
    [actions] = [b for b in blocks if b["type"] == "actions"]
    assert [(e["action_id"], e["value"]) for e in actions["elements"]] == [
        ("aios_approve", "AP-7"),
        ("aios_edit", "AP-7"),
        ("aios_reject", "AP-7"),
    ]


def texts(blocks: list[dict[str, Any]]) -> list[str]:
    """Every text object's text in a message."""
    found: list[str] = []
    for block in blocks:
        found += [block["text"]["text"]] if "text" in block else []
        for element in block.get("elements", []):
            found += [element["text"]] if isinstance(element.get("text"), str) else []
            found += [element["confirm"]["text"]["text"]] if "confirm" in element else []
    return found


def test_a_models_long_texts_fit_slacks_limits() -> None:
    reason = "r" * 500  # the longest reason a refund accepts
    card = replace(
        CARD,
        summary=f"Refund $250.00 on order 1001 ({reason})",
        params={"order_id": 1001, "amount": 250.0, "reason": reason, "body": "b" * 50_000},
        rationale="w" * 6000,
        reason="p" * 5000,
    )
    for text, blocks in (
        approval_request(card),
        approval_closed(card, "approved", "U0MANAGER", datetime(2026, 11, 24, 13, 5, tzinfo=UTC)),
    ):
        sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
        contexts = [e["text"] for b in blocks if b["type"] == "context" for e in b["elements"]]
        assert sections and all(len(s) <= SectionBlock.text_max_length for s in sections)
        assert contexts and all(len(c) <= 3000 for c in contexts)
        assert len(text) <= 3000 and len(blocks) <= 50
        # each parameter on its own line, the long ones in their own sections, shortened
        assert sections[0].endswith("*Amount:* $250.00\n*Order id:* 1001")
        assert sections[1].startswith("*Body:*\n>bbb") and sections[1].endswith("…")
        assert sections[2] == "*Reason:*\n>" + reason
    [actions] = [b for b in approval_request(card)[1] if b["type"] == "actions"]
    assert len(actions["elements"][0]["confirm"]["text"]["text"]) <= ConfirmObject.text_max_length


def test_a_long_notice_is_shortened_without_breaking_an_entity() -> None:
    text, blocks = notice("<@U0ALICE> asked: " + escape("&" * 5000))
    [section] = texts(blocks)
    assert len(section) <= 3000 and section.endswith("&amp;…") and len(text) <= 3000


def test_what_others_wrote_is_escaped_once_and_our_mentions_still_work() -> None:
    card = replace(
        CARD,
        summary="Refund $250.00 on order 1001 (<!channel> Tom & Jerry)",
        params={"order_id": 1001, "amount": 250.0, "reason": "<!channel> Tom & Jerry"},
        rationale="<!here> <@U0MANAGER> approved it <https://evil.example|the shop>",
        reason="<!subteam^S0ALL>",
    )
    text, blocks = approval_request(card)
    everything = [text, *texts(blocks)]
    assert not any("<!" in t or "<@U0MANAGER>" in t or "<https" in t for t in everything)
    assert any("&lt;!here&gt; &lt;@U0MANAGER&gt;" in t for t in everything)
    assert any("Tom &amp; Jerry" in t for t in everything)
    assert not any("&amp;amp;" in t or "&amp;lt;" in t for t in everything)
    assert "Requested by <@U0ALICE>" in texts(blocks)[1]


@pytest.mark.parametrize(
    ("mrkdwn", "limit", "shortened"),
    [
        ("abc", 3, "abc"),
        ("abcdef", 4, "abc…"),
        ("ab &amp; c", 7, "ab …"),  # not "ab &am…"
        ("hi <@U0ALICE> there", 9, "hi …"),  # not "hi <@U0A…"
        ("a &lt;!here&gt;", 14, "a &lt;!here…"),
    ],
)
def test_truncate_never_splits_an_entity_or_a_mention(mrkdwn: str, limit: int, shortened: str) -> None:
    assert truncate(mrkdwn, limit) == shortened


def test_the_terminal_shows_what_others_wrote_as_written() -> None:
    assert render(*notice(f"<@U0ALICE> asked: {escape('Tom & Jerry <!here> &amp;')}")) == (
        "@U0ALICE asked: Tom & Jerry <!here> &amp;"
    )
