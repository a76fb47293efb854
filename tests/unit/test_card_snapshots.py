"""Every Block Kit builder against its committed JSON snapshot, and every block as slack_sdk parses it again.

A change to what a card says fails here until its snapshot is written again deliberately
(`AIOS_UPDATE_SNAPSHOTS=1`) and the diff reviewed; a snapshot that is missing is a failure, never written.
"""

from __future__ import annotations

import json
import os
from dataclasses import replace
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from slack_sdk.models.blocks import Block

from bot.blocks import (
    Message,
    approval_closed,
    approval_request,
    budget_blocked,
    done,
    escalation,
    escalation_closed,
    notice,
)
from bot.content_calendar import Entry, MonthCalendar, Week, calendar_message
from bot.explain import RelatedRecords
from bot.run_review import run_review
from bot.why_blocks import why_message
from runtime.notices import ApprovalCard, CardEdit, EscalationMessage, ReviewLine, RunReview

SNAPSHOTS = Path(__file__).parent / "snapshots"
BERLIN = ZoneInfo("Europe/Berlin")
AT = datetime(2026, 11, 24, 13, 5, tzinfo=UTC)
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
    approver_mentions="<@U0MANAGER> <!subteam^S0LEADS>",
    requester="U0ALICE",
    expires_at=datetime(2026, 11, 24, 16, 0, tzinfo=UTC),
)
QUORUM_CARD = replace(
    CARD,
    approver_roles=("finance",),
    approver_mentions="<@U0FIN1> <@U0FIN2>",
    quorum=2,
    voters=("U0FIN1",),
)
ESCALATION = EscalationMessage(
    run_id="R-5",
    agent="returns",
    people="<@U0MANAGER>",
    reason="The order is older than the return window.",
    question="Should we refund it anyway?",
)
REVIEW = RunReview(
    run_id="R-9",
    requester="U0ALICE",
    rationale="Two posts a week about winter care, Tuesdays and Fridays.",
    approvers=("editor",),
    lines=(
        ReviewLine("AP-20", "Tue 1 Dec 09:00 · “Winter care for boots”", "pending"),
        ReviewLine("AP-21", "Fri 4 Dec 09:00 · “Oiling leather”", "approved", decided_by="U0EDITOR"),
        ReviewLine(
            "AP-22",
            "Tue 8 Dec 09:00 · “Storing sandals”",
            "pending",
            note="only the editor role can decide it (rule planned-drafts-need-an-editor)",
        ),
    ),
)
CALENDAR = MonthCalendar(
    month=date(2026, 12, 1),
    zone=BERLIN,
    weeks=[
        Week(
            date(2026, 11, 30),
            [
                Entry(
                    datetime(2026, 12, 1, 9, 0, tzinfo=BERLIN),
                    "published",
                    "Winter care for boots",
                    "boots",
                    action=40,
                ),
                Entry(
                    datetime(2026, 12, 4, 9, 0, tzinfo=BERLIN),
                    "drafted",
                    "Oiling <leather> & suede",
                    "oiling",
                ),
            ],
        ),
        Week(
            date(2026, 12, 7),
            [Entry(datetime(2026, 12, 8, 9, 0, tzinfo=BERLIN), "scheduled", "Sandals", "s")],
        ),
        Week(date(2026, 12, 14)),
    ],
    problem="The CMS could not be read (timeout); the slots alone are shown.",
)
WHY = (
    "*Why — R-3* (run completed)\n"
    "• *Intent* `I-3`: <@U0ALICE> asked “refund order 1001, $250, arrived broken” (mention, 2026-11-24 13:05 UTC)\n"
    '  – execution `E-4` *succeeded*: `{"refund_id": "re_1"}`'
)

BUILDERS: dict[str, Message] = {
    "approval_request": approval_request(CARD),
    "approval_request_quorum": approval_request(QUORUM_CARD),
    "approval_request_edited": approval_request(
        replace(
            CARD,
            params={"order_id": 1001, "amount": 40.0, "reason": "mug only"},
            edits=(
                CardEdit("U0MANAGER", (("amount", 250.0, 40.0), ("reason", "arrived broken", "mug only"))),
            ),
        )
    ),
    "approval_approved": approval_closed(CARD, "approved", "U0MANAGER", AT),
    "approval_expired": approval_closed(CARD, "expired", None, AT),
    "notice": notice("Allowed by policy: Refund $40.00 on order 1002.", "`A-3` · `D-4`"),
    "done": done(":white_check_mark: Done: Refund $40.00 on order 1002.", "`E-2` · `A-3`"),
    "done_with_undo": done(
        ":white_check_mark: Done: Published spring-lookbook.", "`E-5` · `A-6`", undo="A-6"
    ),
    "budget_blocked": budget_blocked(
        "R-8", "I stopped before calling the model: the team's daily $5.00 is spent."
    ),
    "escalation": escalation(ESCALATION),
    "escalation_closed": escalation_closed(ESCALATION, "taken over", "U0MANAGER", AT),
    "run_review": run_review(REVIEW),
    "run_reviewed": run_review(
        replace(
            REVIEW,
            lines=tuple(replace(line, status="approved", decided_by="U0EDITOR") for line in REVIEW.lines),
        )
    ),
    "content_calendar": calendar_message(CALENDAR),
    "why": why_message("A-5", WHY, RelatedRecords(run="R-3", approval="AP-2", execution="E-4")),
}


def snapshot_path(name: str) -> Path:
    return SNAPSHOTS / f"card_{name}.json"


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_each_card_matches_its_committed_snapshot(name: str) -> None:
    text, blocks = BUILDERS[name]
    rendered = (
        json.dumps({"text": text, "blocks": blocks}, indent=2, sort_keys=True, ensure_ascii=False) + "\n"
    )
    path = snapshot_path(name)
    if os.environ.get("AIOS_UPDATE_SNAPSHOTS") == "1":
        path.write_text(rendered)
    assert path.exists(), f"no snapshot {path.name}: a card's snapshot is committed with the card"
    assert rendered == path.read_text()


@pytest.mark.parametrize("name", sorted(BUILDERS))
def test_each_card_is_block_kit_that_slack_sdk_reads_back_unchanged(name: str) -> None:
    text, blocks = BUILDERS[name]
    parsed = Block.parse_all(blocks)
    assert all(block is not None for block in parsed)
    assert [block.to_dict() for block in parsed] == blocks  # to_dict validates each block and its elements
    assert 0 < len(blocks) <= 50 and 0 < len(text) <= 40_000
    for block in blocks:
        for part in _texts(block):
            assert len(part) <= 3000
        for element in block.get("elements", []):
            assert len(str(element.get("value", ""))) <= 2000


def test_the_approval_card_mentions_the_requester_and_each_approver() -> None:
    _, blocks = BUILDERS["approval_request"]
    policy = next(b for b in blocks if b["block_id"] == "aios_policy")["elements"][0]["text"]
    summary = next(b for b in blocks if b["block_id"] == "aios_summary")["text"]["text"]
    assert "Requested by <@U0ALICE>" in summary
    assert "Approvers: <@U0MANAGER> <!subteam^S0LEADS> (manager)" in policy
    _, nobody_listed = approval_request(replace(CARD, approver_mentions=""))
    assert "Approvers: manager ·" in nobody_listed[3]["elements"][0]["text"]


def test_every_committed_card_snapshot_has_its_builder() -> None:
    committed = {path.stem.removeprefix("card_") for path in SNAPSHOTS.glob("card_*.json")}
    assert committed == set(BUILDERS)


def _texts(value: Any) -> list[str]:
    if isinstance(value, list):
        return [text for item in value for text in _texts(item)]
    if not isinstance(value, dict):
        return []
    own = [str(value["text"])] if value.get("type") in ("mrkdwn", "plain_text") else []
    return own + [text for item in value.values() for text in _texts(item)]
