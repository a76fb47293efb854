"""Test-only crash injection: with AIOS_CRASH_AT=<name>, the process kills itself (SIGKILL) the first time it
reaches that step boundary, so the tests can prove that a restart loses nothing and repeats nothing.

Unset (always, outside those tests), a crash point does nothing."""

from __future__ import annotations

import os
import signal

BOUNDARIES = (
    "intent_accepted",  # the intent is stored and acked; nothing planned yet
    "run_started",  # a run exists; planning has not finished
    "actions_proposed",  # actions, verdicts and approvals are stored; approval cards not posted yet
    "click_stored",  # an approval click is stored and acked; nothing decided yet
    "approval_decided",  # the approval is decided and its click marked processed, not yet committed
    "approval_committed",  # the approval and its click's mark are committed; the action has not been claimed
    "execution_claimed",  # the idempotency key is claimed; the connector has not been called
    "connector_done",  # the connector did the work; the execution is not marked done yet
)


def crash_point(name: str) -> None:
    if os.environ.get("AIOS_CRASH_AT") == name:
        os.kill(os.getpid(), signal.SIGKILL)
