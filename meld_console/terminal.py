"""The terminal driver of a console that must survive a dropped SSH session."""

from __future__ import annotations

import signal
from types import FrameType
from typing import Any

from textual.drivers.linux_driver import LinuxDriver


class HangupSafeDriver(LinuxDriver):
    """Textual's Linux driver, resuming after SIGCONT only when it was suspended.

    When a session's terminal hangs up, the kernel sends SIGHUP and SIGCONT to
    the session together. Textual answers every SIGCONT by starting the screen
    again with a new writer thread; on a dead terminal that thread dies at its
    first write, and shutting down then waits forever for its full queue. A
    SIGCONT that follows no SIGTSTP resumes nothing here.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._suspended = False
        self._on_stop = signal.getsignal(signal.SIGTSTP)
        self._on_continue = signal.getsignal(signal.SIGCONT)
        signal.signal(signal.SIGTSTP, self._stop)
        signal.signal(signal.SIGCONT, self._continue)

    def _stop(self, signum: int, frame: FrameType | None) -> None:
        self._suspended = True
        if callable(self._on_stop):
            self._on_stop(signum, frame)

    def _continue(self, signum: int, frame: FrameType | None) -> None:
        if not self._suspended:
            return
        self._suspended = False
        if callable(self._on_continue):
            self._on_continue(signum, frame)
