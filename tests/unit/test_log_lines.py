"""With JSON logs, what libraries write through `logging` (Bolt's multi-line warnings, exceptions) comes out as
one JSON object per line, like the bot's own structlog lines."""

from __future__ import annotations

import json
import subprocess
import sys

LOGGING = """
import logging, structlog
from bot.logs import configure_logging

configure_logging(json=True)
bolt = logging.getLogger("slack_bolt.AsyncApp")
bolt.warning("Unhandled request ({'type': 'view_submission'})\\n---\\n[Suggestion] You can handle this type\\n")
try:
    token = "xoxb-never-in-the-log"
    raise ValueError("bad\\nvalue")
except ValueError:
    bolt.exception("Failed to run listener function")
structlog.get_logger("bot.web").warning("slack_request_refused", status=400, reason="two\\nlines")
logging.getLogger("aiohttp.access").info("below the level libraries log at: not written")
"""


def test_library_warnings_and_exceptions_are_single_json_lines() -> None:
    result = subprocess.run(
        [sys.executable, "-c", LOGGING], capture_output=True, text=True, timeout=60, check=True
    )

    lines = result.stderr.splitlines()
    records = [json.loads(line) for line in lines]
    assert [(r["level"], r["event"].splitlines()[0]) for r in records] == [
        ("warning", "Unhandled request ({'type': 'view_submission'})"),
        ("error", "Failed to run listener function"),
        ("warning", "slack_request_refused"),
    ]
    assert records[0]["logger"] == "slack_bolt.AsyncApp"
    [exception] = records[1]["exception"]
    assert (exception["exc_type"], exception["exc_value"]) == ("ValueError", "bad\nvalue")
    assert not [line for line in lines if "Traceback" in line] and result.stdout == ""
    assert "xoxb-never-in-the-log" not in result.stderr  # frames' locals are not logged
