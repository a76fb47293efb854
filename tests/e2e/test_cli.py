"""The command line as a new user meets it."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import signal
import socket
import subprocess
from pathlib import Path

import pytest

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


def test_serve_on_a_port_in_use_names_the_port_not_the_database(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        env = aios_env(f"sqlite+aiosqlite:///{tmp_path}/p.db", "http://127.0.0.1:9/api/")
        result = run("serve", "--host", "127.0.0.1", "--port", str(port), env=env)
    assert result.returncode == 2
    assert f"cannot listen on 127.0.0.1:{port}" in result.stderr
    assert "choose another --port (or PORT), or stop what is listening there" in result.stderr
    assert "database" not in result.stderr and "Traceback" not in result.stderr
    # Refused before the bot started: no store was made, so no scheduled job or recovery ran either.
    assert not (tmp_path / "p.db").exists()


@pytest.mark.parametrize("host", ["no-such-host.invalid", "192.0.2.1"])
def test_serve_on_a_host_that_is_not_here_says_to_check_the_host(tmp_path: Path, host: str) -> None:
    env = aios_env(f"sqlite+aiosqlite:///{tmp_path}/h.db", "http://127.0.0.1:9/api/")
    result = run("serve", "--host", host, "--port", "0", env=env)
    assert result.returncode == 2
    assert f"cannot listen on {host}:0" in result.stderr
    assert f"{host} is not an address of this machine; check --host" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "h.db").exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root may listen on any port")
def test_serve_on_a_privileged_port_says_to_choose_one_above_1024(tmp_path: Path) -> None:
    env = aios_env(f"sqlite+aiosqlite:///{tmp_path}/r.db", "http://127.0.0.1:9/api/")
    result = run("serve", "--host", "127.0.0.1", "--port", "80", env=env)
    assert result.returncode == 2
    assert "port 80 needs privileges; choose one above 1024" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "r.db").exists()


def test_db_upgrade(tmp_path: Path) -> None:
    env = aios_env(f"sqlite+aiosqlite:///{tmp_path}/w.db", "http://127.0.0.1:9/api/")
    upgrade = run("db", "upgrade", env=env)
    assert upgrade.returncode == 0 and "newest schema" in upgrade.stdout
    again = run("db", "upgrade", env=env)
    assert again.returncode == 0 and "newest schema" in again.stdout


BAD_INPUTS = {
    "an id that is no id": (("why", "NOPE"), {}, "'NOPE' is not a record id"),
    "an unknown record": (("why", "D-999"), {}, "there is no record D-999"),
    "a database URL that is no URL": (
        ("why", "D-1"),
        {"AIOS_DATABASE_URL": "foo"},
        "AIOS_DATABASE_URL 'foo' is not a database URL; use sqlite+aiosqlite:///",
    ),
    "an unreachable PostgreSQL": (
        ("cost",),
        {"AIOS_DATABASE_URL": "postgresql+asyncpg://aios:secret@127.0.0.1:9/aios"},
        "cannot use the database",
    ),
    "a SQLite folder that cannot be made": (
        ("sandbox", "show"),
        {"AIOS_DATABASE_URL": "sqlite+aiosqlite:////proc/aios/aios.db"},
        "cannot create the folder '/proc/aios'",
    ),
    "a missing policy file": (("chat",), {"AIOS_POLICY_FILE": "/nonexistent.yaml"}, "AIOS_POLICY_FILE"),
    "a bad number setting": (
        ("memory", "search", "ana"),
        {"AIOS_CONNECTOR_TIMEOUT_SECONDS": "soon"},
        "AIOS_CONNECTOR_TIMEOUT_SECONDS='soon'",
    ),
    "a missing setting": (("serve", "--port", "0"), {"SLACK_SIGNING_SECRET": ""}, "SLACK_SIGNING_SECRET"),
    "a worker without the bot token": (("worker",), {"SLACK_BOT_TOKEN": ""}, "SLACK_BOT_TOKEN"),
    "a worker given an argument": (("worker", "now"), {}, "unexpected extra argument"),
    "an unknown command": (("frobnicate",), {}, "No such command 'frobnicate'"),
    "an unknown option": (("cost", "--since", "yesterday"), {}, "No such option: --since"),
    "a missing argument": (("why",), {}, "Missing argument 'ID'"),
    "a bad period": (("cost", "decade"), {}, "'decade' is not a period"),
    "a bad memory id": (("memory", "forget", "M-x"), {}, "'M-x' is not a memory id"),
    "a memory id wider than any key": (
        ("memory", "forget", "M-99999999999999999999"),
        {},
        "has no memory M-99999999999999999999",
    ),
    "a bad duration": (("memory", "remember", "x", "--ttl", "soon"), {}, "not a duration"),
    "digest without --now": (("digest",), {}, "`aios digest --now` builds it at once"),
}


@pytest.mark.parametrize("args, settings, message", BAD_INPUTS.values(), ids=BAD_INPUTS.keys())
def test_bad_input_is_one_clear_line_and_a_failing_exit(
    tmp_path: Path, args: tuple[str, ...], settings: dict[str, str], message: str
) -> None:
    env = aios_env(f"sqlite+aiosqlite:///{tmp_path}/bad.db", "http://127.0.0.1:9/api/")
    env.update(settings)
    result = run(*args, env=env, stdin="")
    assert result.returncode != 0
    assert "Traceback" not in result.stderr + result.stdout
    [line] = result.stderr.strip().splitlines()
    assert line.startswith("error: ") and message in line and len(line) < 300, line


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


def test_a_new_chat_is_a_new_thread_and_clicks_without_an_id_stay_in_it(tmp_path: Path) -> None:
    env = aios_env(f"sqlite+aiosqlite:///{tmp_path}/threads.db", "http://127.0.0.1:9/api/")
    first = run("chat", "--as", "U0ALICE", env=env, stdin="refund order 1001, $120, arrived broken\nquit\n")
    assert first.returncode == 0 and "Approval needed" in first.stdout

    second = run("chat", "--as", "U0BOB", env=env, stdin="approve as U0MANAGER\nrequest budget\nquit\n")
    assert second.returncode == 0, second.stderr
    assert "there is no approval request waiting in this thread" in second.stdout
    assert "no run in this thread is waiting for budget" in second.stdout
    assert json.loads(run("sandbox", "show", "--json", env=env).stdout)["refunds"] == []

    # Named by its id, the older thread's request is clicked where it is, and the console says so.
    third = run("chat", "--as", "U0BOB", env=env, stdin="approve AP-1 as U0MANAGER\nquit\n")
    assert third.returncode == 0, third.stderr
    assert "AP-1 belongs to another thread; the click is made there" in third.stdout
    [refund] = json.loads(run("sandbox", "show", "--json", env=env).stdout)["refunds"]
    assert (refund["order_id"], refund["amount"]) == (1001, 120.0)


def _chat_in_a_terminal(env: dict[str, str]) -> tuple[subprocess.Popen[bytes], int]:
    """`aios chat` on a pseudo-terminal, as a person runs it; returns once it shows its prompt."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [AIOS, "chat", "--as", "U0ALICE"], stdin=terminal, stdout=terminal, stderr=terminal, env=env
    )
    os.close(terminal)
    _read_until(controller, b"U0ALICE")
    return process, controller


def _read_until(controller: int, wanted: bytes) -> bytes:
    seen = b""
    while wanted not in seen:
        ready, _, _ = select.select([controller], [], [], 60)
        assert ready, f"no {wanted!r} from aios chat; it printed {seen.decode(errors='replace')}"
        try:
            chunk = os.read(controller, 65536)
        except OSError:  # the terminal closed: the process has exited
            break
        if not chunk:
            break
        seen += chunk
    return seen


def _rest_of_output(controller: int) -> str:
    seen = b""
    while True:
        ready, _, _ = select.select([controller], [], [], 60)
        if not ready:
            break
        try:
            chunk = os.read(controller, 65536)
        except OSError:
            break
        if not chunk:
            break
        seen += chunk
    os.close(controller)
    return seen.decode(errors="replace")


def test_ctrl_c_at_the_prompt_leaves_at_once_and_cleanly(tmp_path: Path) -> None:
    env = aios_env(f"sqlite+aiosqlite:///{tmp_path}/interrupt.db", "http://127.0.0.1:9/api/")
    process, controller = _chat_in_a_terminal(env)
    process.send_signal(signal.SIGINT)
    try:
        code = process.wait(timeout=30)
    finally:
        process.kill()
        output = _rest_of_output(controller)
    assert code == 130, output
    assert "Traceback" not in output and "Error" not in output and "Exception" not in output


def _strace() -> str | None:
    """strace, where it may trace: a container may refuse it ptrace."""
    strace = shutil.which("strace")
    if strace is None:
        return None
    traced = subprocess.run([strace, "-o", os.devnull, "true"], capture_output=True, check=False)
    return strace if traced.returncode == 0 else None


STRACE = _strace()


@pytest.mark.skipif(
    STRACE is None, reason="strace, allowed to trace, makes the moment between the prompt and the wait last"
)
def test_ctrl_c_just_as_the_prompt_appears_leaves_all_the_same(tmp_path: Path) -> None:
    """Between printing its prompt and waiting for a line, `aios chat` asks the terminal a few things; a busy
    machine can put the process aside right there, as the prompt wakes whoever watches it. A Ctrl-C that comes
    in that moment must end the wait that follows, as one during the wait does (input() alone notes it and waits
    on for a line). strace holds each call on the terminal for 0.2 s, so that the signal comes in that moment."""
    assert STRACE is not None
    env = aios_env(f"sqlite+aiosqlite:///{tmp_path}/early.db", "http://127.0.0.1:9/api/")
    controller, terminal = pty.openpty()
    slowed = ["-f", "-qq", "-o", os.devnull, "-P", os.ttyname(terminal), "-e", "trace=ioctl"]
    tracer = subprocess.Popen(
        [STRACE, *slowed, "-e", "inject=ioctl:delay_exit=200000", AIOS, "chat", "--as", "U0ALICE"],
        stdin=terminal,
        stdout=terminal,
        stderr=terminal,
        env=env,
    )
    os.close(terminal)
    chat = None
    try:
        _read_until(controller, b"U0ALICE")
        [chat] = map(int, Path(f"/proc/{tracer.pid}/task/{tracer.pid}/children").read_text().split())
        os.kill(chat, signal.SIGINT)
        code = tracer.wait(timeout=30)  # strace leaves with its tracee's exit code
    finally:
        if chat is not None and tracer.poll() is None:
            os.kill(chat, signal.SIGKILL)
        tracer.kill()
        output = _rest_of_output(controller)
    assert code == 130, output
    assert "Traceback" not in output


def test_only_the_main_thread_can_take_ctrl_c(tmp_path: Path) -> None:
    """The kernel hands a process's SIGINT to any of its threads that does not block it, and a prompt waiting in
    the main thread never hears of a signal another thread took: every other thread of `aios chat` (its SQLite
    connection's) must block SIGINT and SIGTERM, as /proc shows."""
    env = aios_env(f"sqlite+aiosqlite:///{tmp_path}/threads.db", "http://127.0.0.1:9/api/")
    process, controller = _chat_in_a_terminal(env)
    try:
        tasks = Path(f"/proc/{process.pid}/task")
        others = [task for task in tasks.iterdir() if task.name != str(process.pid)]
        assert others, "aios chat was expected to hold its SQLite connection in a thread of its own"
        wanted = (1 << (signal.SIGINT - 1)) | (1 << (signal.SIGTERM - 1))
        for task in others:
            blocked = _signal_mask(task / "status", "SigBlk")
            assert blocked & wanted == wanted, f"thread {task.name} can take SIGINT or SIGTERM ({blocked:#x})"
    finally:
        process.kill()
        _rest_of_output(controller)


def _signal_mask(status: Path, field: str) -> int:
    line = next(line for line in status.read_text().splitlines() if line.startswith(f"{field}:"))
    return int(line.split()[1], 16)


def test_ctrl_d_at_the_prompt_leaves_with_success(tmp_path: Path) -> None:
    env = aios_env(f"sqlite+aiosqlite:///{tmp_path}/eof.db", "http://127.0.0.1:9/api/")
    process, controller = _chat_in_a_terminal(env)
    os.write(controller, b"\x04")  # Ctrl-D on an empty line: end of input
    assert process.wait(timeout=30) == 0
    assert "Traceback" not in _rest_of_output(controller)


def test_connectors_lists_what_is_in_use_and_what_to_set(tmp_path: Path) -> None:
    env = {**aios_env(f"sqlite+aiosqlite:///{tmp_path}/c.db", "http://127.0.0.1:9/api/"), "COLUMNS": "200"}
    result = run("connectors", env=env)
    assert result.returncode == 0, result.stderr
    rows = {line.split("│")[1].strip(): line for line in result.stdout.splitlines() if line.count("│") > 3}
    assert "in use (local, in the SQL store)" in rows["shop"] and "shop.refund" in rows["shop"]
    assert "not configured (set AIOS_SHOP_API_URL)" in rows["shop-api"]
    assert {"cms", "email", "budget"} <= set(rows)
