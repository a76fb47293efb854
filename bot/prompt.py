"""The terminal's prompt, which Ctrl-C always interrupts."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import sys
from types import TracebackType

from rich.console import Console


class Prompt:
    """Reads one typed line at a time; a Ctrl-C while it waits raises KeyboardInterrupt, however early it comes.

    ``input()`` acts on a signal only when it interrupts the read() that waits for the line. One that arrives in
    the instant between Python's last check for signals and that read() (on a busy machine the process can be
    put aside right there, as the prompt it just printed wakes whoever is watching) is noted by the C handler
    and never acted on: read() waits on for a line. So is one that the kernel hands to another thread (one not
    started by Python, such as a numerical library's, may not block signals). The C handler, in whichever
    thread it runs, also writes the signal to the signal module's wakeup file descriptor: a wait on that and on
    the terminal together misses none.

    A terminal in its usual line mode makes the line readable only once it is whole, and ``input()`` reads it
    straight from the terminal, so the wait never holds back a line that has arrived. Input that is not a
    terminal (a script piped in) is read as it comes, without the wait: Python may hold lines of it already.
    """

    def __init__(self, console: Console) -> None:
        self._console = console
        self._terminal = sys.stdin.isatty()
        self._woken, self._wake = os.pipe()  # non-blocking, as the wakeup file descriptor must be
        os.set_blocking(self._woken, False)
        os.set_blocking(self._wake, False)
        self._previous = -1  # the wakeup file descriptor that ours stands in for during a wait

    def __enter__(self) -> Prompt:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        try:
            self._give_back_the_wakeup_fd()  # a Ctrl-C during the wait's own may have left ours in place
        finally:
            os.close(self._woken)
            os.close(self._wake)

    def read(self, prompt: str) -> str:
        """The next line typed after ``prompt`` (console markup); EOFError at the end of the input."""
        self._console.print(prompt, end="")
        if self._terminal:
            self._wait_for_a_line()
        return input()

    def _wait_for_a_line(self) -> None:
        stdin = sys.stdin.fileno()
        try:
            # A Ctrl-C as this returns raises before what it returns is kept: what is put back then is what an
            # earlier wait kept (the same: nothing else sets one while the prompt is open), else none.
            self._previous = signal.set_wakeup_fd(self._wake, warn_on_full_buffer=False)
            while True:
                ready, _, _ = select.select([stdin, self._woken], [], [])
                if stdin in ready:
                    return
                # A signal woke the wait; its handler has run by now (Ctrl-C's raises), so another is waited on.
                with contextlib.suppress(BlockingIOError):
                    os.read(self._woken, 512)
        finally:
            self._give_back_the_wakeup_fd()

    def _give_back_the_wakeup_fd(self) -> None:
        """Put back the one ours stands in for; left alone if ours is not there (never set, or given back)."""
        current = signal.set_wakeup_fd(self._previous)
        if current != self._wake:
            signal.set_wakeup_fd(current)
