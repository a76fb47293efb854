"""The App Home through the real `aios serve` and the local Slack Web API: opening the Home tab publishes the
approver's Home with the waiting approval and its buttons (the Messages tab publishes nothing), a new request shows
up on it within seconds without reopening it, and Approve clicked on the Home runs the refund once, settles the
card in the thread and publishes the Home again without it, saying at its top what came of the click."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.e2e.test_click_inbox import post, query, wait_until
from tests.fakes.aios_process import aios_env, running_aios_serve
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.slack_payloads import app_home_opened, app_mention, view_block_action

MANAGER = "U0MANAGER"
ALICE = "U0ALICE"


def buttons(view: dict[str, Any]) -> list[tuple[str, str]]:
    return [
        (element["action_id"], element["value"])
        for block in view.get("blocks", [])
        if block["type"] == "actions"
        for element in block["elements"]
    ]


def waiting(slack: FakeSlackApi, user: str) -> list[str]:
    """The approvals on ``user``'s Home as last published, by their Approve buttons."""
    return [value for action, value in buttons(slack.homes.get(user, {})) if action == "aios_approve"]


def publishes(slack: FakeSlackApi, user: str) -> int:
    return len([c for c in slack.calls_to("views.publish") if c.params.get("user_id") == user])


def test_an_approver_sees_and_decides_what_waits_on_their_home(tmp_path: Path) -> None:
    database = tmp_path / "aios.db"
    with (
        FakeSlackApi() as slack,
        running_aios_serve(aios_env(f"sqlite+aiosqlite:///{database}", slack.url)) as serve,
    ):
        assert (
            post(serve.url, *app_mention("refund $150 on order 1001, arrived broken", user=ALICE, ts="1.1"))
            == 200
        )
        wait_until(lambda: query(database, "SELECT id FROM approval WHERE message_ts IS NOT NULL"))
        [(first, card_ts)] = query(database, "SELECT id, message_ts FROM approval")

        assert post(serve.url, *app_home_opened(MANAGER, tab="messages")) == 200
        assert post(serve.url, *app_home_opened(ALICE)) == 200
        wait_until(lambda: publishes(slack, ALICE) == 1)
        assert waiting(slack, ALICE) == []  # her own request waits for a manager
        assert publishes(slack, MANAGER) == 0  # the Messages tab is no view to publish

        assert post(serve.url, *app_home_opened(MANAGER)) == 200
        wait_until(lambda: publishes(slack, MANAGER) == 1)
        home = slack.homes[MANAGER]
        assert home["type"] == "home"
        assert (("aios_approve", f"AP-{first}") in buttons(home)) and (
            ("aios_reject", f"AP-{first}") in buttons(home)
        )
        assert "Refund $150.00 on order 1001" in str(home["blocks"])

        # A new request reaches the manager's Home on its own, within seconds.
        assert (
            post(serve.url, *app_mention("refund $120 on order 1003, wrong size", user=ALICE, ts="1.2"))
            == 200
        )
        wait_until(lambda: len(waiting(slack, MANAGER)) == 2, seconds=15)
        [(second,)] = query(database, f"SELECT id FROM approval WHERE id != {first}")
        assert waiting(slack, MANAGER) == [f"AP-{first}", f"AP-{second}"]

        assert post(serve.url, *view_block_action("aios_approve", f"AP-{first}", user=MANAGER)) == 200
        wait_until(lambda: query(database, "SELECT status FROM execution") == [("succeeded",)])
        wait_until(lambda: waiting(slack, MANAGER) == [f"AP-{second}"])
        wait_until(lambda: "home_notice" in str(slack.homes[MANAGER]["blocks"][0]))
        assert slack.homes[MANAGER]["blocks"][0]["text"]["text"] == (
            f":information_source: Your click on `AP-{first}`: approved."
        )
        wait_until(
            lambda: any("Approved" in str(c.params.get("blocks")) for c in slack.calls_to("chat.update"))
        )
        closed = [c.params for c in slack.calls_to("chat.update") if c.params.get("ts") == card_ts]
        assert (
            closed and closed[-1]["channel"] == "C0SHOP" and "aios_approve" not in str(closed[-1]["blocks"])
        )

        assert query(database, "SELECT order_id, amount FROM sandbox_refund") == [(1001, 150.0)]
        assert query(database, f"SELECT status, decided_by FROM approval WHERE id = {first}") == [
            ("approved", MANAGER)
        ]
        assert query(database, "SELECT channel, processed_at IS NOT NULL FROM click") == [("C0SHOP", 1)]
        assert [c.params["text"] for c in slack.calls_to("chat.postEphemeral")] == []

        def done() -> list[str]:
            thread = [
                c.params["text"]
                for c in slack.calls_to("chat.postMessage")
                if c.params.get("thread_ts") == "1.1"
            ]
            return [text for text in thread if text.startswith(":white_check_mark: Done: ")]

        wait_until(done)
        assert done() == [
            ":white_check_mark: Done: Refund $150.00 on order 1001 (arrived broken). "
            "(refund_id: re_1, order_id: 1001, amount: 150.0)"
        ]
