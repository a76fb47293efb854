"""Which record one of our messages is about, read from the message a shortcut hands back: the most specific id
its small print or its buttons carry, and nothing from a message someone else posted."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

from hypothesis import example, given
from hypothesis import strategies as st

from bot.blocks import Message, approval_closed, approval_request, budget_blocked, done, escalation, notice
from bot.message_ids import ids_in_message, is_ours, most_specific, record_of_message
from bot.run_review import run_review
from runtime.notices import ApprovalCard, CardEdit, EscalationMessage, ReviewLine, RunReview

OURS = "B0AIOS"
SMALL = "aios_notice_context"
CARD = ApprovalCard(
    approval_id="AP-7",
    action_id="A-12",
    decision_id="D-31",
    summary="Refund $250.00 on order 1001 (arrived broken)",
    params={"order_id": 1001, "amount": 250.0},
    rationale="It arrived broken; see `E-99` and `R-98`.",  # a model's words never name the record
    rule_id="refunds-over-100-need-a-manager",
    reason="refunds over $100 need a manager's approval",
    approver_roles=("manager",),
    requester="U0ALICE",
    expires_at=datetime(2026, 11, 24, 16, 0, tzinfo=UTC),
)
REVIEW = RunReview(
    run_id="R-4",
    requester="U0ALICE",
    rationale="Two posts a week.",
    approvers=("editor",),
    lines=(
        ReviewLine("AP-8", "Tue 1 Dec 09:00 · “Winter care”", "pending"),
        ReviewLine("AP-9", "Fri 4 Dec 09:00 · “Boots”", "approved", decided_by="U0EDITOR"),
    ),
)


def posted(message: Message, bot_id: str | None = OURS, **extra: Any) -> dict[str, Any]:
    """A message as Slack hands it back in a shortcut."""
    text, blocks = message
    return {
        "type": "message",
        "ts": "1800000000.000001",
        "text": text,
        "blocks": blocks,
        "bot_id": bot_id,
        **extra,
    }


def test_each_of_our_messages_is_about_its_most_specific_record() -> None:
    edited = approval_request(replace(CARD, edits=(CardEdit("U0MANAGER", (("reason", "x", "see `E-99`"),)),)))
    decided = approval_closed(CARD, "approved", "U0MANAGER", datetime(2026, 11, 24, 13, 5, tzinfo=UTC))
    cases = {
        "approval card": (approval_request(CARD), "AP-7"),
        "decided approval card": (decided, "AP-7"),
        "edited approval card": (edited, "AP-7"),  # the edit's words are not ours
        "review card": (run_review(REVIEW), "R-4"),
        "done line": (
            done(":white_check_mark: Done: Refund.", "`E-5` · `A-12` · `/aios why A-12`", "A-12"),
            "E-5",
        ),
        "failure line": (notice(":x: shop.refund failed.", "`A-12`"), "A-12"),
        "thread's first message": (notice("<@U0ALICE> asked: refund `E-9` please", "`I-3`"), "I-3"),
        "budget stop": (budget_blocked("R-6", "I stopped before calling the model."), "R-6"),
        "escalation": (
            escalation(EscalationMessage("R-2", "returns", "<@U0ANA>", "unsure", "which?")),
            "R-2",
        ),
    }
    for name, (message, record) in cases.items():
        assert record_of_message(posted(message), OURS) == record, name


def test_a_decided_review_card_names_no_single_record_in_its_small_print() -> None:
    closed = run_review(replace(REVIEW, lines=(REVIEW.lines[1],)))
    assert ids_in_message(posted(closed)) == []  # the handler finds it by the message's ts instead


def test_a_message_someone_else_posted_is_about_nothing_whatever_it_carries() -> None:
    card = approval_request(CARD)
    assert record_of_message(posted(card, bot_id="B0OTHER"), OURS) is None
    assert record_of_message(posted(card, bot_id=None, user="U0ALICE"), OURS) is None
    person = {
        "type": "message",
        "ts": "1.2",
        "user": "U0ALICE",
        "text": "what about `AP-7`?",
        "blocks": [{"type": "context", "elements": [{"type": "mrkdwn", "text": "`AP-7`"}]}],
    }
    assert record_of_message(person, OURS) is None
    assert record_of_message(posted(card), None) is None  # without our own id nothing is ours


def test_the_most_specific_kind_named_once_wins() -> None:
    assert most_specific([("R", 1), ("AP", 2), ("D", 3)]) == "AP-2"
    assert most_specific([("AP", 2), ("AP", 3), ("R", 1)]) == "R-1"
    assert most_specific([("AP", 2), ("AP", 3)]) is None
    assert most_specific([]) is None


def test_only_our_buttons_and_backticked_small_print_count() -> None:
    message = {
        "bot_id": OURS,
        "blocks": [
            {"type": "section", "text": {"type": "mrkdwn", "text": "`E-4`"}},
            {
                "type": "context",
                "block_id": SMALL,
                "elements": [{"type": "mrkdwn", "text": "R-3 bare, `D-2`"}],
            },
            {"type": "context", "block_id": SMALL, "elements": [{"type": "plain_text", "text": "`E-8`"}]},
            {"type": "context", "block_id": "aios_edits", "elements": [{"type": "mrkdwn", "text": "`E-9`"}]},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "`E-7`"}]},
            {"type": "actions", "elements": [{"type": "button", "action_id": "other_app", "value": "E-5"}]},
            {"type": "actions", "elements": [{"type": "button", "action_id": "aios_undo", "value": "A-6"}]},
            {
                "type": "context",
                "block_id": SMALL,
                "elements": [{"type": "mrkdwn", "text": "`A-0` `A-99999999999`"}],
            },
        ],
    }
    assert ids_in_message(message) == [("D", 2), ("A", 6)]
    assert record_of_message(message, OURS) == "D-2"


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=30),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
id_texts = st.from_regex(r"`(AP|[IRADEM]|X)-\d{1,12}`", fullmatch=True)
element = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["mrkdwn", "plain_text", "button", "image"]) | json_values,
        "text": id_texts | json_values,
        "action_id": st.sampled_from(["aios_approve", "aios_undo", "other"]) | json_values,
        "value": st.from_regex(r"(AP|[IRADE])-\d{1,12}", fullmatch=True) | json_values,
    },
)
block = st.fixed_dictionaries(
    {},
    optional={
        "type": st.sampled_from(["context", "actions", "section", "rich_text"]) | json_values,
        "block_id": st.sampled_from(["aios_policy", "aios_notice_context", "aios_edits"]) | json_values,
        "elements": st.lists(element | json_values, max_size=4) | json_values,
    },
)
message = st.fixed_dictionaries(
    {},
    optional={
        "ts": json_values,
        "text": st.text(max_size=40),
        "bot_id": st.sampled_from([OURS, "B0OTHER", ""]) | json_values,
        "user": json_values,
        "blocks": st.lists(block | json_values, max_size=5) | json_values,
    },
)


@given(message)
@example({"bot_id": OURS, "blocks": [{"type": "context", "block_id": []}]})  # a block id that is no string
def test_any_message_is_read_without_a_crash_and_never_names_a_record_it_does_not_carry(
    shared: dict[str, Any],
) -> None:
    record = record_of_message(shared, OURS)
    if not is_ours(shared, OURS):
        assert record is None
    if record is not None:
        carried = {
            f"{kind}-{int(key)}" for kind, key in re.findall(r"(AP|[IRADE])-(\d+)", json.dumps(shared))
        }
        assert record in carried
