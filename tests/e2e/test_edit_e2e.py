"""Edit, then approve, through the real `aios serve` with signed payloads and the local Slack Web API: the Edit
button opens the dialog of the refund's parameters (views.open with the click's trigger id); a manager's edit
to $40 is stored, judged again and runs once for $40; a wrong amount is answered with the error under the
amount input and stores nothing; someone who may not decide gets a dialog saying so; and an edit acked just
before the process is killed is carried out after the restart."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

from tests.e2e.test_click_inbox import query, wait_until
from tests.fakes.aios_process import ServeProcess, aios_env, running_aios_serve
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.slack_payloads import app_mention, block_action, interactivity, sign, view_submission

MANAGER = "U0MANAGER"
EDITOR = "U0EDITOR"  # not a manager: may not decide a refund over $100


def post(url: str, body: str, content_type: str) -> tuple[int | None, str]:
    """The status and body of the answer; (None, "") when the server died before answering."""
    request = urllib.request.Request(
        f"{url}/slack/events", data=body.encode(), headers={"Content-Type": content_type, **sign(body)}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status), response.read().decode()
    except (urllib.error.URLError, ConnectionError, TimeoutError):
        return None, ""


def trigger_of(body: str) -> str:
    payload = json.loads(parse_qs(body)["payload"][0])
    return str(payload["trigger_id"])


def opened_for(slack: FakeSlackApi, trigger_id: str) -> dict[str, Any]:
    """The view that views.open was called with for this trigger id (waiting for it)."""
    found: list[dict[str, Any]] = []

    def opened() -> bool:
        found[:] = [
            c.params for c in slack.calls_to("views.open") if c.params.get("trigger_id") == trigger_id
        ]
        return bool(found)

    wait_until(opened, seconds=15)
    [params] = found
    view = params["view"]
    return json.loads(view) if isinstance(view, str) else dict(view)


def state_of(view: dict[str, Any], **typed: dict[str, Any]) -> dict[str, dict[str, dict[str, Any]]]:
    """``view.state.values`` as Slack sends it: each input as the dialog opened it, but those typed in."""
    values: dict[str, dict[str, dict[str, Any]]] = {}
    for block in view["blocks"]:
        if block["type"] != "input":
            continue
        element = block["element"]
        kind = element["type"]
        if kind in ("number_input", "plain_text_input"):
            state: dict[str, Any] = {"type": kind, "value": element.get("initial_value")}
        elif kind == "static_select":
            state = {"type": kind, "selected_option": element.get("initial_option")}
        else:
            state = {"type": kind, "selected_date_time": element.get("initial_date_time")}
        values[block["block_id"]] = {element["action_id"]: typed.get(block["block_id"], state)}
    return values


def ask_for_a_refund(serve: ServeProcess, slack: FakeSlackApi, database: Path) -> tuple[int, str]:
    """Alice asks for a $250 refund, which waits for a manager; its approval id and its card's ts."""
    assert (
        post(serve.url, *app_mention("refund $250 on order 1001, broken", user="U0ALICE", ts="1.1"))[0] == 200
    )
    wait_until(lambda: query(database, "SELECT message_ts FROM approval WHERE message_ts IS NOT NULL"))
    [(approval_id, card_ts)] = query(database, "SELECT id, message_ts FROM approval WHERE status = 'pending'")
    assert isinstance(approval_id, int)
    return approval_id, str(card_ts)


def open_dialog(
    serve: ServeProcess, slack: FakeSlackApi, approval: str, user: str, card_ts: str
) -> dict[str, Any]:
    click = block_action("aios_edit", approval, user=user, message_ts=card_ts)
    assert post(serve.url, *click) == (200, "")
    return opened_for(slack, trigger_of(click[0]))


def test_a_manager_edits_the_refund_to_40_and_it_runs_once_for_40(tmp_path: Path) -> None:
    database = tmp_path / "aios.db"
    with FakeSlackApi() as slack:
        env = aios_env(f"sqlite+aiosqlite:///{database}", slack.url)
        with running_aios_serve(env) as serve:
            approval_id, card_ts = ask_for_a_refund(serve, slack, database)
            approval = f"AP-{approval_id}"
            [card] = slack.approval_requests()
            [buttons] = [b for b in card.params["blocks"] if b["type"] == "actions"]
            assert [(e["text"]["text"], e["value"]) for e in buttons["elements"]] == [
                ("Approve", approval),
                ("Edit", approval),
                ("Reject", approval),
            ]

            # Someone who may not decide it is told so, in a dialog with nothing to save.
            refused = open_dialog(serve, slack, approval, EDITOR, card_ts)
            assert "submit" not in refused
            assert f"Only the manager role can decide {approval}" in refused["blocks"][0]["text"]["text"]

            view = open_dialog(serve, slack, approval, MANAGER, card_ts)
            assert view["callback_id"] == "aios_edit" and view["private_metadata"] == approval
            assert view["title"]["text"] == f"Edit {approval}" and view["submit"]["text"] == "Save"
            amount = next(b for b in view["blocks"] if b.get("block_id") == "amount")
            assert amount["element"]["type"] == "number_input"
            assert amount["element"]["initial_value"] == "250"

            # A wrong amount: the dialog stays open with the error under the amount, and nothing is stored.
            for wrong, said in (("-5", "greater than"), ("abc", "is not a number")):
                values = state_of(view, amount={"type": "number_input", "value": wrong})
                status, body = post(
                    serve.url, *view_submission("aios_edit", values, user=MANAGER, private_metadata=approval)
                )
                assert status == 200
                answer = json.loads(body)
                assert answer["response_action"] == "errors" and list(answer["errors"]) == ["amount"]
                assert said in answer["errors"]["amount"]
            assert query(database, "SELECT COUNT(*) FROM action_edit") == [(0,)]

            values = state_of(view, amount={"type": "number_input", "value": "40"})
            saved = view_submission("aios_edit", values, user=MANAGER, private_metadata=approval)
            assert post(serve.url, *saved) == (200, "")
            wait_until(lambda: query(database, "SELECT status FROM execution") == [("succeeded",)])
            wait_until(lambda: query(database, "SELECT processed_at IS NOT NULL FROM action_edit") == [(1,)])
            wait_until(lambda: [c for c in slack.calls_to("chat.update") if c.params.get("ts") == card_ts])

        assert query(database, "SELECT order_id, amount FROM sandbox_refund") == [(1001, 40.0)]
        [(params,)] = query(database, "SELECT params FROM proposed_action")
        assert json.loads(str(params)) == {"order_id": 1001, "amount": 40.0, "reason": "broken"}
        assert query(database, "SELECT user, approval_id FROM action_edit") == [(MANAGER, approval_id)]
        settled = [c.params for c in slack.calls_to("chat.update") if c.params.get("ts") == card_ts][-1]
        assert not [b for b in settled["blocks"] if b["type"] == "actions"]  # decided: no buttons left
        assert "$40.00" in json.dumps(settled["blocks"])


def test_an_edit_acked_before_a_crash_is_carried_out_after_the_restart(tmp_path: Path) -> None:
    database = tmp_path / "aios.db"
    with FakeSlackApi() as slack:
        env = aios_env(f"sqlite+aiosqlite:///{database}", slack.url)
        with running_aios_serve({**env, "AIOS_CRASH_AT": "edit_stored"}) as doomed:
            approval_id, card_ts = ask_for_a_refund(doomed, slack, database)
            approval = f"AP-{approval_id}"
            view = open_dialog(doomed, slack, approval, MANAGER, card_ts)
            values = state_of(view, amount={"type": "number_input", "value": "40"})
            post(doomed.url, *view_submission("aios_edit", values, user=MANAGER, private_metadata=approval))
            doomed.process.wait(10)
            assert doomed.process.returncode == -9, "the server never reached edit_stored"
        assert query(database, "SELECT user, processed_at FROM action_edit") == [(MANAGER, None)]
        assert query(database, "SELECT COUNT(*) FROM execution") == [(0,)]

        with running_aios_serve(env):  # nobody edits again
            wait_until(lambda: query(database, "SELECT status FROM execution") == [("succeeded",)])
            wait_until(lambda: query(database, "SELECT processed_at IS NOT NULL FROM action_edit") == [(1,)])

        assert query(database, "SELECT order_id, amount FROM sandbox_refund") == [(1001, 40.0)]
        assert query(database, "SELECT status, decided_by FROM approval") == [("approved", MANAGER)]


def test_malformed_edits_are_acknowledged_and_logged_never_failed(tmp_path: Path) -> None:
    database = tmp_path / "aios.db"
    with FakeSlackApi() as slack:
        env = aios_env(f"sqlite+aiosqlite:///{database}", slack.url)
        with running_aios_serve(env) as serve:
            approval_id, card_ts = ask_for_a_refund(serve, slack, database)
            approval = f"AP-{approval_id}"
            view = open_dialog(serve, slack, approval, MANAGER, card_ts)
            values = state_of(view, amount={"type": "number_input", "value": "40"})

            # Another dialog's metadata, or an approval that does not exist: said under the first input.
            for metadata, said in (
                ("R-1", "not one of AIOS's edits"),
                ("AP-999", "There is no approval AP-999"),
            ):
                status, body = post(
                    serve.url, *view_submission("aios_edit", values, user=MANAGER, private_metadata=metadata)
                )
                assert status == 200
                answer = json.loads(body)
                assert answer["response_action"] == "errors" and list(answer["errors"]) == ["amount"]
                assert said in answer["errors"]["amount"]

            # A submission with none of the inputs: a plain ack.
            assert post(
                serve.url, *view_submission("aios_edit", {}, user=MANAGER, private_metadata=approval)
            ) == (200, "")
            # A submission without its view's state.
            payload = json.loads(
                parse_qs(view_submission("aios_edit", values, user=MANAGER, private_metadata=approval)[0])[
                    "payload"
                ][0]
            )
            del payload["view"]["state"]
            assert post(serve.url, *interactivity(payload)) == (200, "")
            # A click whose value names no approval opens nothing; a refused views.open is logged.
            assert post(serve.url, *block_action("aios_edit", "D-1", user=MANAGER, message_ts=card_ts)) == (
                200,
                "",
            )
            slack.fail_next("views.open", "expired_trigger_id")
            click = block_action("aios_edit", approval, user=MANAGER, message_ts=card_ts)
            assert post(serve.url, *click) == (200, "")
            wait_until(lambda: "edit_dialog_not_opened" in serve.log.read_text(), seconds=15)
            assert len(slack.calls_to("views.open")) == 2  # the first dialog, and the refused one
            log = serve.log.read_text()

        assert query(database, "SELECT COUNT(*) FROM action_edit") == [(0,)]
        assert query(database, "SELECT status FROM approval") == [("pending",)]
        for logged in (
            "edit_with_foreign_metadata",
            "edit_of_unknown_approval",
            "edit_without_inputs",
            "slack_payload_malformed",
            "click_with_unknown_value",
        ):
            assert logged in log


def test_a_click_on_a_card_drawn_before_an_edit_does_not_approve_the_edited_request(tmp_path: Path) -> None:
    """A manager asks for $250 and edits it to $300: their own edit cannot approve it, so it waits for the
    other manager. That manager's Approve on the card as first drawn ($250) is refused; on the card as redrawn
    with the edit, it approves the $300 refund, which runs once."""
    database = tmp_path / "aios.db"
    policy = tmp_path / "policy.yaml"
    packaged = Path(__file__).parents[2] / "policies" / "default_policy.yaml"
    policy.write_text(packaged.read_text().replace("manager: [U0MANAGER]", "manager: [U0MANAGER, U0BOSS]"))
    with FakeSlackApi() as slack:
        env = {**aios_env(f"sqlite+aiosqlite:///{database}", slack.url), "AIOS_POLICY_FILE": str(policy)}
        with running_aios_serve(env) as serve:
            request = app_mention("refund $250 on order 1001, broken", user=MANAGER, ts="1.1")
            assert post(serve.url, *request)[0] == 200
            wait_until(
                lambda: query(database, "SELECT message_ts FROM approval WHERE message_ts IS NOT NULL")
            )
            [(approval_id, card_ts)] = query(database, "SELECT id, message_ts FROM approval")
            approval = f"AP-{approval_id}"
            [card] = slack.approval_requests()
            [drawn] = [b["block_id"] for b in card.params["blocks"] if b["type"] == "actions"]

            view = open_dialog(serve, slack, approval, MANAGER, str(card_ts))
            values = state_of(view, amount={"type": "number_input", "value": "300"})
            saved = view_submission("aios_edit", values, user=MANAGER, private_metadata=approval)
            assert post(serve.url, *saved) == (200, "")
            wait_until(lambda: query(database, "SELECT processed_at IS NOT NULL FROM action_edit") == [(1,)])
            redrawn: list[str] = []

            def card_redrawn() -> bool:
                updates = [c.params for c in slack.calls_to("chat.update") if c.params.get("ts") == card_ts]
                redrawn[:] = [b["block_id"] for u in updates for b in u["blocks"] if b["type"] == "actions"]
                return bool(redrawn)

            wait_until(card_redrawn)
            assert redrawn[-1] != drawn
            assert query(database, "SELECT status FROM approval") == [("pending",)]

            stale = block_action(
                "aios_approve", approval, user="U0BOSS", message_ts=str(card_ts), block_id=drawn
            )
            assert post(serve.url, *stale) == (200, "")
            wait_until(
                lambda: (
                    query(database, "SELECT COUNT(*) FROM decision WHERE verdict = 'refused:card_outdated'")
                    == [(1,)]
                )
            )
            assert query(database, "SELECT status FROM approval") == [("pending",)]
            # The refusal is told privately once its decision is committed: waited for, as it comes after.
            slack.wait_for(
                lambda s: [
                    c
                    for c in s.calls_to("chat.postEphemeral")
                    if c.params["user"] == "U0BOSS"
                    and "edited after the card you clicked was drawn" in c.params["text"]
                ]
            )

            fresh = block_action(
                "aios_approve", approval, user="U0BOSS", message_ts=str(card_ts), block_id=redrawn[-1]
            )
            assert post(serve.url, *fresh) == (200, "")
            wait_until(lambda: query(database, "SELECT status FROM execution") == [("succeeded",)])
        assert query(database, "SELECT order_id, amount FROM sandbox_refund") == [(1001, 300.0)]
        assert query(database, "SELECT status, decided_by FROM approval") == [("approved", "U0BOSS")]


def test_a_second_editor_keeps_the_first_editors_change(tmp_path: Path) -> None:
    """A manager asks for $250 (their own edit cannot approve it) and both managers open the Edit dialog. The
    first saves a new reason; the second, whose dialog still shows the old reason, changes the reason too and
    is told it changed meanwhile, then changes only the amount: that approves $200 with the first's reason."""
    database = tmp_path / "aios.db"
    policy = tmp_path / "policy.yaml"
    packaged = Path(__file__).parents[2] / "policies" / "default_policy.yaml"
    policy.write_text(packaged.read_text().replace("manager: [U0MANAGER]", "manager: [U0MANAGER, U0BOSS]"))
    with FakeSlackApi() as slack:
        env = {**aios_env(f"sqlite+aiosqlite:///{database}", slack.url), "AIOS_POLICY_FILE": str(policy)}
        with running_aios_serve(env) as serve:
            request = app_mention("refund $250 on order 1001, broken", user=MANAGER, ts="1.1")
            assert post(serve.url, *request)[0] == 200
            wait_until(
                lambda: query(database, "SELECT message_ts FROM approval WHERE message_ts IS NOT NULL")
            )
            [(approval_id, card_ts)] = query(database, "SELECT id, message_ts FROM approval")
            approval = f"AP-{approval_id}"
            mine = open_dialog(serve, slack, approval, MANAGER, str(card_ts))
            theirs = open_dialog(serve, slack, approval, "U0BOSS", str(card_ts))
            assert "order_id" not in {b.get("block_id") for b in mine["blocks"] if b["type"] == "input"}

            values = state_of(mine, reason={"type": "plain_text_input", "value": "only the mug"})
            saved = view_submission(
                "aios_edit", values, user=MANAGER, private_metadata=approval, blocks=mine["blocks"]
            )
            assert post(serve.url, *saved) == (200, "")
            wait_until(lambda: query(database, "SELECT processed_at IS NOT NULL FROM action_edit") == [(1,)])

            values = state_of(theirs, reason={"type": "plain_text_input", "value": "all of it"})
            clash = view_submission(
                "aios_edit", values, user="U0BOSS", private_metadata=approval, blocks=theirs["blocks"]
            )
            status, body = post(serve.url, *clash)
            assert status == 200 and list(json.loads(body)["errors"]) == ["reason"]
            assert "Someone else changed this" in json.loads(body)["errors"]["reason"]

            values = state_of(theirs, amount={"type": "number_input", "value": "200"})
            saved = view_submission(
                "aios_edit", values, user="U0BOSS", private_metadata=approval, blocks=theirs["blocks"]
            )
            assert post(serve.url, *saved) == (200, "")
            wait_until(lambda: query(database, "SELECT status FROM execution") == [("succeeded",)])
        assert query(database, "SELECT order_id, amount FROM sandbox_refund") == [(1001, 200.0)]
        [(params,)] = query(database, "SELECT params FROM proposed_action")
        assert json.loads(str(params)) == {"order_id": 1001, "amount": 200.0, "reason": "only the mug"}
        assert query(database, "SELECT status, decided_by FROM approval") == [("approved", "U0BOSS")]
