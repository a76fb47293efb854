"""The Undo button through the real `aios serve`: a signed interactivity payload, clicked twice (and by two
people at once), files one undo, which the policy sends to an editor; the editor's click unpublishes the post.
And `/aios undo` in `aios chat`, on the packaged policy."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tests.fakes.aios_process import AIOS, aios_env, running_aios_serve
from tests.fakes.slack_api import FakeSlackApi
from tests.fakes.slack_payloads import app_mention, block_action, sign

EDITOR = "U0EDITOR"
POLICY = """
version: 1
roles:
  manager: [U0MANAGER]
  editor: [U0EDITOR]
rules:
  - id: drafts-are-fine
    when: action.name == "cms.create_draft"
    verdict: allow
  - id: publishing-is-fine-here
    when: action.name == "cms.publish"
    verdict: allow
  - id: unpublishing-needs-an-editor
    when: action.name == "cms.unpublish"
    verdict: require_approval
    approvers: [editor]
default: require_approval
default_approvers: [manager]
"""


def post(url: str, body: str, content_type: str) -> int:
    request = urllib.request.Request(
        f"{url}/slack/events", data=body.encode(), headers={"Content-Type": content_type, **sign(body)}
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        return int(response.status)


def query(database: Path, sql: str) -> list[tuple[Any, ...]]:
    with sqlite3.connect(database, timeout=30) as connection:
        return connection.execute(sql).fetchall()


def wait_until(condition: Any, seconds: float = 30) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if found := condition():
            return found
        time.sleep(0.05)
    raise AssertionError("timed out")


def undo_values(slack: FakeSlackApi) -> list[str]:
    return [
        element["value"]
        for call in slack.calls_to("chat.postMessage")
        for block in call.params.get("blocks") or []
        if block["type"] == "actions"
        for element in block["elements"]
        if element.get("action_id") == "aios_undo"
    ]


def ephemerals(slack: FakeSlackApi) -> list[tuple[str, str]]:
    return [(c.params["user"], c.params["text"]) for c in slack.calls_to("chat.postEphemeral")]


def test_the_undo_button_files_one_undo_however_often_it_is_clicked(tmp_path: Path) -> None:
    database = tmp_path / "aios.db"
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    with FakeSlackApi() as slack:
        env = {**aios_env(f"sqlite+aiosqlite:///{database}", slack.url), "AIOS_POLICY_FILE": str(policy)}
        with running_aios_serve(env) as serve:
            assert (
                post(
                    serve.url, *app_mention('draft a post titled "Spring lookbook"', user="U0ALICE", ts="1.1")
                )
                == 200
            )
            wait_until(lambda: query(database, "SELECT 1 FROM proposed_action WHERE status = 'executed'"))
            assert (
                post(
                    serve.url,
                    *app_mention("publish post spring-lookbook", user="U0ALICE", ts="1.2", thread_ts="1.1"),
                )
                == 200
            )
            [value] = wait_until(lambda: undo_values(slack))
            [(publish,)] = query(database, "SELECT id FROM proposed_action WHERE name = 'cms.publish'")
            assert value == f"A-{publish}"

            def click(user: str) -> int:
                return post(
                    serve.url, *block_action("aios_undo", value, user=user, message_ts="1800000000.000003")
                )

            with ThreadPoolExecutor(2) as pool:  # two people at once
                assert list(pool.map(click, ["U0BOB", "U0CARL"])) == [200, 200]
            assert click("U0BOB") == 200  # and a double click
            wait_until(lambda: len(ephemerals(slack)) == 3)
            [(approval, undo)] = wait_until(
                lambda: query(
                    database,
                    "SELECT approval.id, proposed_action.id FROM approval JOIN proposed_action "
                    "ON proposed_action.id = approval.action_id WHERE proposed_action.name = 'cms.unpublish'",
                )
            )

            told = [text for _, text in ephemerals(slack)]
            assert len([t for t in told if t.startswith(f"Asking to undo A-{publish}")]) == 1
            assert len([t for t in told if t.startswith(f"An undo of A-{publish}")]) == 2
            assert query(database, "SELECT action_id, attempt FROM undo_request") == [(publish, 0)]
            assert query(database, "SELECT id FROM proposed_action WHERE undoes_action_id IS NOT NULL") == [
                (undo,)
            ]
            assert serve.process.poll() is None

            assert (
                post(
                    serve.url, *block_action("aios_approve", f"AP-{approval}", user=EDITOR, message_ts="1.3")
                )
                == 200
            )
            done = [
                ("cms.create_draft", "executed"),
                ("cms.publish", "executed"),
                ("cms.unpublish", "executed"),
            ]
            wait_until(
                lambda: query(database, "SELECT name, status FROM proposed_action ORDER BY id") == done
            )
            assert query(database, "SELECT slug, status FROM sandbox_post") == [
                ("spring-lookbook", "unpublished")
            ]


def test_aios_chat_names_the_undo_and_files_it_for_the_packaged_policy(tmp_path: Path) -> None:
    env = aios_env(f"sqlite+aiosqlite:///{tmp_path}/chat.db", "http://127.0.0.1:9/api/")
    script = "\n".join(
        [
            'draft a post titled "Spring lookbook"',
            "publish post spring-lookbook",
            "approve as U0EDITOR",
            "/aios undo A-2",
            "/aios undo A-2",
            "approve as U0EDITOR",  # unpublishing-needs-an-editor
            "/aios why A-2",
            "/aios undo A-1",
            "quit",
        ]
    )
    result = subprocess.run(
        [AIOS, "chat", "--as", "U0ALICE"],
        env=env,
        input=script + "\n",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "[ Undo ]   (type: /aios undo A-2)" in out  # on the publish's Done line; the draft's has none
    assert out.count("[ Undo ]") == 1
    assert "Asking to undo A-2 with Unpublish post spring-lookbook" in out
    assert "An undo of A-2 is already on its way: A-3 is awaiting approval" in out
    assert "undone by `A-3`" in out
    assert "A-1 (Create draft “Spring lookbook” (spring-lookbook)) cannot be undone" in out
    state = json.loads(
        subprocess.run([AIOS, "sandbox", "show", "--json"], env=env, capture_output=True, text=True).stdout
    )
    assert [(p["slug"], p["status"]) for p in state["posts"]] == [("spring-lookbook", "unpublished")]


def post_or_none(url: str, body: str, content_type: str) -> int | None:
    """The status, or None when the server died before answering."""
    try:
        return post(url, body, content_type)
    except (OSError, ConnectionError):
        return None


def test_an_undo_claimed_before_a_crash_is_filed_once_after_the_restart(tmp_path: Path) -> None:
    database = tmp_path / "aios.db"
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    with FakeSlackApi() as slack:
        env = {**aios_env(f"sqlite+aiosqlite:///{database}", slack.url), "AIOS_POLICY_FILE": str(policy)}
        with running_aios_serve({**env, "AIOS_CRASH_AT": "undo_claimed"}) as doomed:
            post(doomed.url, *app_mention('draft a post titled "Spring lookbook"', user="U0ALICE", ts="1.1"))
            # The two intents are handled concurrently: the publish must find the draft written.
            wait_until(lambda: query(database, "SELECT 1 FROM proposed_action WHERE status = 'executed'"))
            post(
                doomed.url,
                *app_mention("publish post spring-lookbook", user="U0ALICE", ts="1.2", thread_ts="1.1"),
            )
            [value] = wait_until(lambda: undo_values(slack))
            post_or_none(doomed.url, *block_action("aios_undo", value, user="U0BOB", message_ts="1.3"))
            doomed.process.wait(10)
            assert doomed.process.returncode == -9, "the server never reached undo_claimed"
        [(publish,)] = query(database, "SELECT id FROM proposed_action WHERE name = 'cms.publish'")
        assert query(database, "SELECT action_id, attempt, requested_by FROM undo_request") == [
            (publish, 0, "U0BOB")
        ]
        assert query(database, "SELECT COUNT(*) FROM proposed_action WHERE undoes_action_id IS NOT NULL") == [
            (0,)
        ]

        with running_aios_serve(env):  # nobody clicks again
            wait_until(lambda: query(database, "SELECT 1 FROM approval"))
            time.sleep(0.5)  # anything filed twice would show by now

        assert query(
            database,
            "SELECT name, status, undoes_action_id FROM proposed_action WHERE undoes_action_id IS NOT NULL",
        ) == [("cms.unpublish", "awaiting_approval", publish)]
        assert query(database, "SELECT requester, approver_roles FROM approval") == [("U0BOB", '["editor"]')]
        # Filed as the undo it was claimed for, not planned from the words "undo A-…".
        assert query(database, "SELECT agent FROM run ORDER BY id") == [
            ("content",),
            ("content",),
            ("content",),
        ]
        assert not [
            c for c in slack.calls_to("chat.postMessage") if "didn't catch" in str(c.params.get("text"))
        ]
