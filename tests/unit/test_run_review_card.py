"""The run review card's rationale: cut after a whole word, within Slack's limits."""

from __future__ import annotations

from bot.blocks import REASON_MAX
from bot.run_review import run_review
from runtime.notices import ReviewLine, RunReview


def test_a_long_rationale_is_cut_after_a_whole_word() -> None:
    rationale = "Understood: " + " ".join(["wintercare"] * 400)
    line = ReviewLine(approval_id="AP-1", text="Tue 3 Nov 09:00 · “A”", status="pending")
    review = RunReview("R-1", "U0ALICE", rationale, ("editor",), (line, line))
    _, blocks = run_review(review)
    intro = next(b for b in blocks if b["block_id"] == "aios_review_intro")["text"]["text"]
    shown = intro.split("*Why the agent proposes them:* ", 1)[1]
    assert shown.endswith("wintercare…") and len(shown) <= REASON_MAX
