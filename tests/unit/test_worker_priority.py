"""`AIOS_WORKER_NICE`: what the setting takes, and a worker that cannot have SCHED_IDLE saying so. Each case that
changes a priority runs in a process of its own: a priority, once lowered, cannot be raised again."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from pydantic import ValidationError

from bot.settings import Settings


@pytest.mark.parametrize(
    ("text", "read"), [("idle", "idle"), (" IDLE ", "idle"), ("0", 0), ("019", 19), (" 7", 7)]
)
def test_a_niceness_or_idle_is_read(text: str, read: object) -> None:
    assert Settings(AIOS_WORKER_NICE=text).worker_nice == read


@pytest.mark.parametrize("text", ["", "20", "-1", "+5", "1e1", "10.0", "fast", "١٢", "²", "9" * 5000])
def test_anything_else_is_refused_in_a_line_that_says_what_it_takes(text: str) -> None:
    with pytest.raises(ValidationError, match="must be a niceness from 0 to 19, or idle"):
        Settings(AIOS_WORKER_NICE=text)


def test_a_system_that_refuses_sched_idle_leaves_niceness_19_and_says_so() -> None:
    refused = """
import os
def refuse(*args):
    raise PermissionError(1, "Operation not permitted")
os.sched_setscheduler = refuse
from bot.cli import _lower_priority
_lower_priority("idle")
print("niceness", os.getpriority(os.PRIO_PROCESS, 0))
"""
    done = subprocess.run(
        [sys.executable, "-c", refused], capture_output=True, text=True, timeout=60, env=dict(os.environ)
    )
    assert done.returncode == 0, done.stderr
    assert "sched_idle_refused" in done.stdout + done.stderr
    assert "Operation not permitted" in done.stdout + done.stderr
    assert done.stdout.strip().endswith("niceness 19")
