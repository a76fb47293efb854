"""Reject with a reason through the real `aios serve`: the Reject click rejects at once and opens the reason dialog
with the click's own trigger id; the dialog's submission plans the request again, and the revision's card is
posted in the same thread; a reason too long for the record is answered with an error under the input, and a Reject
that cannot count opens no dialog."""

from __future__ import annotations

import json
import time
import urllib.request
from pathlib import Path
from urllib.parse import parse_qs

from tests.e2e.test_click_inbox import post, query, wait_until
from tests.fakes.aios_process import aios_env, running_aios_serve
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.slack_payloads import app_mention, block_action, sign, view_submission

MANAGER = "U0MANAGER"
OTHER = "U0EDITOR"


def submit(url: str, body: str, content_type: str) -> tuple[int, str]:
    """A view submission's status and the body it was answered with (a modal's errors come in it)."""
    request = urllib.request.Request(
        f"{url}/slack/events", data=body.encode(), headers={"Content-Type": content_type, **sign(body)}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status), response.read().decode()


def reason(text: str, approval: str, user: str = MANAGER) -> tuple[str, str]:
    values = {"reason": {"value": {"type": "plain_text_input", "value": text}}}
    return view_submission("aios_reject_reason", values, private_metadata=approval, user=user)


def test_reject_opens_the_reason_dialog_and_its_answer_is_planned_again(tmp_path: Path) -> None:
    database = tmp_path / "aios.db"
    with FakeSlackApi() as slack:
        env = aios_env(f"sqlite+aiosqlite:///{database}", slack.url)
        with running_aios_serve(env) as serve:
            mention = app_mention("refund $250 on order 1001, arrived broken", user="U0ALICE", ts="1.1")
            assert post(serve.url, *mention) == 200
            wait_until(lambda: query(database, "SELECT id FROM approval WHERE message_ts IS NOT NULL"))
            [(approval_id, card_ts)] = query(database, "SELECT id, message_ts FROM approval")
            ref = f"AP-{approval_id}"

            click = block_action("aios_reject", ref, user=MANAGER, message_ts=str(card_ts))
            trigger = json.loads(parse_qs(click[0])["payload"][0])["trigger_id"]
            assert post(serve.url, *click) == 200
            wait_until(lambda: slack.calls_to("views.open"))
            wait_until(lambda: query(database, "SELECT status FROM approval") == [("rejected",)])
            [opened] = slack.calls_to("views.open")
            assert opened.params["trigger_id"] == trigger
            view = opened.params["view"]
            view = json.loads(view) if isinstance(view, str) else view
            assert (view["callback_id"], view["private_metadata"]) == ("aios_reject_reason", ref)
            assert view["title"]["text"] == f"Why reject {ref}?"
            assert (view["submit"]["text"], view["close"]["text"]) == ("Send", "Skip")
            assert view["blocks"][0]["element"]["max_length"] == 2000

            # A Reject that cannot count (the request is decided) is not asked why.
            late = block_action("aios_reject", ref, user=OTHER, message_ts=str(card_ts))
            assert post(serve.url, *late) == 200
            wait_until(
                lambda: (
                    query(database, f"SELECT processed_at IS NOT NULL FROM click WHERE user = '{OTHER}'")
                    == [(1,)]
                )
            )
            time.sleep(1)
            assert len(slack.calls_to("views.open")) == 1

            status, answer = submit(serve.url, *reason("x" * 2001, ref))
            assert status == 200
            errors = json.loads(answer)
            assert errors["response_action"] == "errors"
            assert errors["errors"]["reason"].startswith("Please keep it to 2,000 characters")
            status, answer = submit(serve.url, *reason("refund $10", ref, user=OTHER))
            assert (
                json.loads(answer)["errors"]["reason"] == f"Only <@{MANAGER}> who rejected {ref} can say why."
            )
            assert query(database, "SELECT COUNT(*) FROM rejection_reason") == [(0,)]

            status, answer = submit(serve.url, *reason("refund only the broken item, $120", ref))
            assert status == 200 and answer == ""
            wait_until(
                lambda: len(query(database, "SELECT id FROM approval WHERE message_ts IS NOT NULL")) == 2
            )
            wait_until(lambda: query(database, "SELECT outcome FROM rejection_reason") == [("revised",)])

        [revision] = [c.params for c in slack.approval_requests() if "$120.00" in str(c.params.get("blocks"))]
        assert revision["thread_ts"] == "1.1" and revision["channel"] == "C0SHOP"
        said = [str(c.params["text"]) for c in slack.calls_to("chat.postMessage")]
        assert f":speech_balloon: <@{MANAGER}> rejected {ref}: “refund only the broken item, $120”" in said
        assert query(database, "SELECT COUNT(DISTINCT intent_id), COUNT(*) FROM run") == [(1, 2)]
        assert query(database, "SELECT name, status FROM proposed_action ORDER BY id") == [
            ("shop.refund", "rejected"),
            ("shop.refund", "awaiting_approval"),
        ]
        assert query(database, "SELECT COUNT(*) FROM sandbox_refund") == [(0,)]
