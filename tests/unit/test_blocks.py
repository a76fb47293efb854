"""Snapshot of the Block Kit JSON. Regenerate deliberately with AIOS_UPDATE_SNAPSHOTS=1 and review the diff."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.blocks import ApprovalCard, approval_closed, approval_request, notice

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
        ("aios_reject", "AP-7"),
    ]
