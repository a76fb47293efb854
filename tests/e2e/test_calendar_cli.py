"""The content calendar from a terminal: a month planned and approved in `aios chat`, then shown by `/aios
calendar` there and by `aios calendar`; a month it cannot read is one line and a failing exit."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.fakes.aios_process import AIOS, aios_env


def run(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([AIOS, *args], env=env, input=stdin, capture_output=True, text=True, timeout=120)


def test_a_month_planned_in_chat_is_shown_in_chat_and_by_the_calendar_command(tmp_path: Path) -> None:
    env = aios_env(f"sqlite+aiosqlite:///{tmp_path}/calendar.db", "http://127.0.0.1:9/api/")
    script = "\n".join(
        [
            "/aios plan next month: 2 posts about winter care, on Tuesdays",
            "approve as U0EDITOR",
            "approve as U0EDITOR",
            "/aios calendar next month",
            "quit",
        ]
    )
    chat = run("chat", "--as", "U0CAROL", env=env, stdin=script + "\n")
    assert chat.returncode == 0, chat.stderr
    assert chat.stdout.count("Policy rule `planned-drafts-need-an-editor`") >= 2
    assert "2 planned" in chat.stdout and "· planned · “Winter care: the beginner's checklist”" in chat.stdout

    table = run("calendar", "next", "month", env=env)
    assert table.returncode == 0, table.stderr
    rows = [line for line in table.stdout.splitlines() if "○ planned" in line]
    assert len(rows) == 2 and "Winter care: the" in rows[0]  # the title wraps in an 80-column table
    assert "A-" in rows[0]

    unreadable = run("calendar", "someday", env=env)
    assert unreadable.returncode == 2
    assert unreadable.stderr.strip().startswith(
        "error: I can't read “someday” as a month; try `aios calendar`"
    )
    assert "Traceback" not in unreadable.stderr
