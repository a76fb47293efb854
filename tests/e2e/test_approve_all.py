"""Approve all through the real `aios serve`, with signed `block_actions`: a planned month waits on one review
card, one click approves every slot; killed (SIGKILL) right after the click is stored and acked, or right
after the first approval is decided, the restarted process finishes without anyone clicking again, and each
draft and slot is made once."""

from __future__ import annotations

from pathlib import Path

import pytest
from slack_sdk.models.blocks import Block

from tests.e2e.test_click_inbox import post, query, wait_until
from tests.fakes.aios_process import aios_env, running_aios_serve
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.slack_payloads import app_mention, block_action

EDITOR = "U0EDITOR"


@pytest.mark.parametrize("boundary", ["click_stored", "approval_decided"])
def test_approve_all_acked_before_a_crash_makes_each_planned_draft_once(
    boundary: str, tmp_path: Path
) -> None:
    database = tmp_path / "aios.db"
    with FakeSlackApi() as slack:
        env = aios_env(f"sqlite+aiosqlite:///{database}", slack.url)
        with running_aios_serve({**env, "AIOS_CRASH_AT": boundary}) as doomed:
            mention = app_mention(
                "plan next month: two posts a week about winter care, Tuesdays and Fridays",
                user="U0ALICE",
                ts="1.1",
            )
            assert post(doomed.url, *mention) == 200
            wait_until(
                lambda: query(database, "SELECT message_ts FROM approval WHERE message_ts IS NOT NULL")
            )
            waiting = query(database, "SELECT id FROM approval WHERE status = 'pending'")
            assert len(waiting) >= 8
            [card] = [
                c.params
                for c in slack.calls_to("chat.postMessage")
                if "aios_approve_all" in str(c.params.get("blocks"))
            ]
            blocks = card["blocks"]
            assert isinstance(blocks, list) and len(blocks) <= 50
            for block in blocks:
                parsed = Block.parse(block)
                assert parsed is not None
                parsed.validate_json()
            assert slack.approval_requests() == []  # no card of its own for any slot
            [(run_id,)] = query(database, "SELECT id FROM run")
            [(card_ts,)] = query(database, "SELECT DISTINCT message_ts FROM approval")
            clicked = block_action("aios_approve_all", f"R-{run_id}", user=EDITOR, message_ts=str(card_ts))
            post(doomed.url, *clicked)
            doomed.process.wait(10)
            assert doomed.process.returncode == -9, f"the server never reached {boundary}"
        assert len(query(database, "SELECT id FROM click WHERE processed_at IS NULL")) >= len(waiting) - 1

        with running_aios_serve(env):  # nobody clicks again
            wait_until(lambda: query(database, "SELECT status FROM run") == [("completed",)], seconds=60)
            wait_until(
                lambda: query(database, "SELECT COUNT(*) FROM click WHERE processed_at IS NULL") == [(0,)]
            )

        assert query(database, "SELECT DISTINCT status, decided_by FROM approval") == [("approved", EDITOR)]
        assert query(database, "SELECT COUNT(*) FROM planned_slot") == [(len(waiting),)]
        assert query(database, "SELECT COUNT(*) FROM execution WHERE status = 'succeeded'") == [
            (len(waiting),)
        ]
        assert query(database, "SELECT COUNT(*) FROM decision WHERE kind = 'refusal'") == [(0,)]
        assert [c.params["text"] for c in slack.calls_to("chat.postEphemeral")] == []
        closed = [
            c.params
            for c in slack.calls_to("chat.update")
            if "aios_review_context" in str(c.params.get("blocks"))
        ][-1]
        assert closed["text"].startswith(f"Reviewed (R-{run_id}): {len(waiting)} actions")
