"""The command line as a new user meets it."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

from tests.fakes.aios_process import AIOS, aios_env


def run(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AIOS, *args], env=env, input=stdin, capture_output=True, text=True, timeout=120)


def test_chat_is_one_thread_with_approvals_as_prompts(tmp_path: Path) -> None:
    env = aios_env(f"sqlite+aiosqlite:///{tmp_path}/chat.db", "http://127.0.0.1:9/api/")
    script = "\n".join(
        [
            "refund order 1001, $250, arrived broken",
            "approve as U0BOB",
            "reject AP-1 as U0MANAGER",
            "as U0MANAGER",
            "/aios why AP-1",
            "/aios pending",
            "quit",
        ]
    )
    result = run("chat", "--as", "U0ALICE", env=env, stdin=script + "\n")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "Approval needed" in out and "[ Approve ]" in out
    assert "Only the manager role can decide AP-1" in out
    assert "rejected AP-1; nothing was done" in out
    assert "rejected by @U0MANAGER" in out
    assert "No approvals are waiting." in out
    state = json.loads(run("sandbox", "show", "--json", env=env).stdout)
    assert state["refunds"] == [] and [o["id"] for o in state["orders"]] == [1001, 1002, 1003, 1004, 1005]


def test_a_bad_policy_file_is_refused_at_start_naming_the_rule(tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(
        "version: 1\nroles: {manager: [U0M]}\nrules:\n  - id: broken-rule\n    when: 'amount >'\n"
        "    verdict: allow\ndefault: deny\n"
    )
    env = aios_env(f"sqlite+aiosqlite:///{tmp_path}/p.db", "http://127.0.0.1:9/api/")
    env.update({"AIOS_POLICY_FILE": str(policy), "SLACK_BOT_TOKEN": "xoxb-1", "SLACK_SIGNING_SECRET": "s"})
    result = run("serve", "--port", "0", env=env)
    assert result.returncode == 2
    assert "rule 'broken-rule': its `when` is not valid CEL" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_without_slack_credentials_says_what_to_set(tmp_path: Path) -> None:
    env = aios_env(f"sqlite+aiosqlite:///{tmp_path}/s.db", "http://127.0.0.1:9/api/")
    del env["SLACK_SIGNING_SECRET"]
    result = run("serve", env=env)
    assert result.returncode == 2
    assert "SLACK_SIGNING_SECRET is not set" in result.stderr and "Traceback" not in result.stderr


def test_why_of_an_unknown_record_and_db_upgrade(tmp_path: Path) -> None:
    env = aios_env(f"sqlite+aiosqlite:///{tmp_path}/w.db", "http://127.0.0.1:9/api/")
    upgrade = run("db", "upgrade", env=env)
    assert upgrade.returncode == 0 and "newest schema" in upgrade.stdout
    assert run("why", "D-7", env=env).stdout.strip() == "There is no record D-7."
    assert "is not a record id" in run("why", "seven", env=env).stdout


def test_an_unusable_database_url_is_explained(tmp_path: Path) -> None:
    env = aios_env("mysql://root@localhost/test", "http://127.0.0.1:9/api/")
    result = run("sandbox", "show", "--json", env=env)
    assert (
        result.returncode == 2 and "AIOS_DATABASE_URL" in result.stderr and "Traceback" not in result.stderr
    )


def test_digest_now_posts_to_the_digest_channel_once_per_minute(tmp_path: Path) -> None:
    from tests.fakes.slack_api import FakeSlackApi

    with FakeSlackApi() as slack:
        env = aios_env(f"sqlite+aiosqlite:///{tmp_path}/d.db", slack.url)
        env["AIOS_DIGEST_CHANNEL"] = "C0DIGEST"
        first = run("digest", "--now", env=env)
        assert first.returncode == 0, first.stderr
        assert "digest posted to C0DIGEST" in first.stdout
        [post] = slack.calls_to("chat.postMessage")
        assert (
            post.params["channel"] == "C0DIGEST" and post.params["blocks"][0]["text"]["text"] == "AIOS digest"
        )


def test_digest_without_slack_prints_it_and_cost_prints_tables(tmp_path: Path) -> None:
    env = aios_env(f"sqlite+aiosqlite:///{tmp_path}/c.db", "http://127.0.0.1:9/api/")
    del env["SLACK_BOT_TOKEN"]
    printed = run("digest", "--now", env=env)
    assert printed.returncode == 0 and "AIOS digest" in printed.stdout and "not posted" in printed.stderr
    cost = run("cost", "week", env=env)
    assert cost.returncode == 0 and "Model spend by agent, week" in cost.stdout
    bad = run("cost", "decade", env=env)
    assert bad.returncode == 2 and "'decade' is not a period" in bad.stderr


def test_chat_with_claude_over_budget_then_granted(tmp_path: Path) -> None:
    from policies.engine import DEFAULT_POLICY
    from tests.e2e.test_budget_flow import TINY_BUDGET
    from tests.fakes.anthropic_api import API_KEY, FakeAnthropicApi, Reply, ToolUse

    policy = tmp_path / "policy.yaml"
    policy.write_text(Path(DEFAULT_POLICY).read_text() + TINY_BUDGET)
    with FakeAnthropicApi() as anthropic:
        anthropic.script(
            Reply(
                "Refund the cracked blender.",
                (ToolUse("shop_refund", {"order_id": 1003, "amount": 29.0, "reason": "cracked lid"}),),
            )
        )
        env = aios_env(f"sqlite+aiosqlite:///{tmp_path}/chat.db", "http://127.0.0.1:9/api/")
        env.update(
            {
                "ANTHROPIC_API_KEY": API_KEY,
                "ANTHROPIC_BASE_URL": anthropic.url,
                "AIOS_POLICY_FILE": str(policy),
            }
        )
        script = "refund order 1003, the lid cracked\nrequest budget\napprove as U0MANAGER\nquit\n"
        result = run("chat", "--as", "U0ALICE", env=env, stdin=script)
        assert result.returncode == 0, result.stderr
        assert len(anthropic.requests) == 1
    out = result.stdout
    assert (
        "I stopped before calling the model" in out and "[ Request budget ]   (type: request budget)" in out
    )
    assert "Grant $1.00 more to budget returns-daily" in out
    assert "Done: Refund $29.00 on order 1003 (cracked lid)" in out
    assert "offline mode" not in out


def test_memory_commands_round_trip(tmp_path: Path) -> None:
    env = aios_env(f"sqlite+aiosqlite:///{tmp_path}/m.db", "http://127.0.0.1:9/api/")
    assert (
        "remembered as M-1"
        in run(
            "memory",
            "remember",
            "Ana prefers email",
            "--kind",
            "customer",
            "--key",
            "customer:ana@example.com",
            env=env,
        ).stdout
    )
    assert "already remembered as M-1" in run("memory", "remember", "ana prefers  email", env=env).stdout
    [hit] = json.loads(run("memory", "search", "email", "--json", env=env).stdout)
    assert (hit["id"], hit["kind"], hit["text"]) == (1, "customer", "Ana prefers email")
    assert {"score", "created_at"} <= set(hit)
    exported = tmp_path / "memories.jsonl"
    exported.write_text(run("memory", "export", env=env).stdout)
    refused = run("memory", "import", str(exported), "--team", "T0ELSEWHERE", env=env)
    assert refused.returncode == 2 and "never move between teams" in refused.stderr
    assert "forgot M-1" in run("memory", "forget", "M-1", env=env).stdout
    assert "imported 1 new memories" in run("memory", "import", str(exported), env=env).stdout
    bad = run("memory", "remember", "x", "--ttl", "soon", env=env)
    assert bad.returncode == 2 and "not a duration" in bad.stderr
