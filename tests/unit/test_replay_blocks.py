"""A replay's Block Kit message stays within Slack's limits however many actions changed."""

from __future__ import annotations

from slack_sdk.models.blocks import SectionBlock

from bot.replay import BLOCKS_MAX, ReplayReport, Scope, slack_message
from policies.engine import Policy
from policies.replay import Facts, RecordedDecision, replay

CANDIDATE = Policy.from_text(
    """
version: 1
roles: {manager: [U0MANAGER]}
rules:
  - id: every-refund-is-denied
    when: action.name == "shop.refund"
    verdict: deny
default: deny
default_approvers: [manager]
""",
    "candidate.yaml",
)


def report_of(actions: int, reason: str = "broken") -> ReplayReport:
    report = ReplayReport(CANDIDATE, Scope(run_id=1))
    for n in range(1, actions + 1):
        recorded = RecordedDecision(
            decision_id=n,
            action_id=n,
            run_id=1,
            name="shop.refund",
            params={"order_id": 1001, "amount": 10.0, "reason": reason},
            verdict="allow",
            rule_id="small-refunds-are-fine",
            policy_hash="0" * 64,
            approvers=(),
            facts=Facts("U0ALICE", run_totals={"shop.refund": 10.0 * n}).as_json(),
            requester="U0ALICE",
        )
        report.take(replay(CANDIDATE, recorded), keep=10_000)
    return report


def test_thousands_of_changes_fit_in_fifty_blocks_and_say_how_many_are_left_out() -> None:
    text, blocks = slack_message(report_of(3000))
    assert len(blocks) == BLOCKS_MAX
    sections = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert all(len(section) <= SectionBlock.text_max_length for section in sections)
    shown = sum(section.count("A-") for section in sections[1:-1])
    assert sections[-1] == f"…and {3000 - shown} more"
    assert len(text) <= 3000


def test_a_long_parameter_and_what_people_wrote_are_shortened_and_escaped() -> None:
    _, blocks = slack_message(report_of(2, reason="<!channel> " + "x" * 5000))
    listed = blocks[2]["text"]["text"]
    assert "&lt;!channel&gt;" in listed and "<!channel>" not in listed
    assert len(listed) < 1000
