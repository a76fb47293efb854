"""The prompt's wakeup file descriptor, set while it waits for a line, is always given back."""

from __future__ import annotations

import io
import os
import pty
import signal
import sys
from collections.abc import Iterator

import pytest
from rich.console import Console

from bot.prompt import Prompt


@pytest.fixture
def terminal(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """Standard input a terminal, as `aios chat`'s is; yields the other end, where lines are typed."""
    controller, terminal = pty.openpty()
    with os.fdopen(terminal, "r", closefd=True) as stdin:
        monkeypatch.setattr(sys, "stdin", stdin)
        yield controller
    os.close(controller)


@pytest.fixture
def wakeup_fd() -> Iterator[int]:
    """A wakeup file descriptor of the test's own, in place before the prompt waits."""
    read_end, write_end = os.pipe()
    os.set_blocking(write_end, False)
    previous = signal.set_wakeup_fd(write_end)
    yield write_end
    signal.set_wakeup_fd(previous)
    os.close(read_end)
    os.close(write_end)


def test_the_wakeup_fd_in_place_before_a_wait_is_in_place_after_it(terminal: int, wakeup_fd: int) -> None:
    os.write(terminal, b"hello\n")
    with Prompt(Console(file=io.StringIO())) as prompt:
        assert prompt.read("> ") == "hello"
    assert signal.set_wakeup_fd(wakeup_fd) == wakeup_fd


def test_a_ctrl_c_just_as_the_wait_sets_its_wakeup_fd_leaves_the_one_before_in_place(
    terminal: int, wakeup_fd: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A line is read; then, as the next wait sets its wakeup fd, a Ctrl-C comes: its KeyboardInterrupt is raised
    as set_wakeup_fd returns, before what it returned is kept. The prompt's pipe must not stay the wakeup fd once
    it is closed (a later signal would write into whatever then reuses its number)."""
    set_wakeup_fd = signal.set_wakeup_fd
    waits = 0

    def second_wait_interrupted(fd: int, **kwargs: bool) -> int:
        nonlocal waits
        previous = set_wakeup_fd(fd, **kwargs)
        if fd not in (-1, wakeup_fd) and (waits := waits + 1) == 2:
            signal.raise_signal(signal.SIGINT)  # Python's handler raises as soon as this returns
        return previous

    monkeypatch.setattr(signal, "set_wakeup_fd", second_wait_interrupted)
    os.write(terminal, b"hello\n")
    with pytest.raises(KeyboardInterrupt), Prompt(Console(file=io.StringIO())) as prompt:
        assert prompt.read("> ") == "hello"
        prompt.read("> ")
    monkeypatch.undo()
    assert waits == 2
    assert set_wakeup_fd(wakeup_fd) == wakeup_fd
