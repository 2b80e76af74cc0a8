"""The node's log file, tailed, with a level filter."""

from __future__ import annotations

import logging
from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Label

from meld_core.types import NodeSnapshot

from ..logs import LEVELS, LogLine, LogReader
from ..widgets import LogTail
from .base import LiveScreen

log = logging.getLogger(__name__)


class LogScreen(LiveScreen):
    """Tails `config.log_path` while in view; `l` raises the lowest level shown."""

    MODE = "log"

    BINDINGS = [
        Binding("l", "next_level", "Level"),
        # Priority, or the log widget's own End takes the key and the footer
        # never shows it.
        Binding("end", "follow", "Follow", priority=True),
    ]

    class LinesRead(Message):
        """New lines arrived from the log file."""

        def __init__(self, lines: list[LogLine]) -> None:
            super().__init__()
            self.lines = lines

    class ReadFailed(Message):
        """The log file could not be read; `note` says why."""

        def __init__(self, note: str) -> None:
            super().__init__()
            self.note = note

    def __init__(self) -> None:
        super().__init__()
        self._path: Path | None = None
        self._reader: LogReader | None = None
        self._reading = False
        self._problem: str | None = None

    def compose_body(self) -> ComposeResult:
        yield Label("", id="log-title", classes="section-title")
        yield LogTail(id="log")

    def on_mount(self) -> None:
        self._path = self.console.log_path
        if self._path is not None:
            self._reader = LogReader(self._path)
        self._show_title()

    def show_snapshot(self, snapshot: NodeSnapshot) -> None:
        if self._reader is not None and not self._reading:
            self._reading = True
            self.read_log()

    @work(thread=True, group="log-read")
    def read_log(self) -> None:
        """Read new lines in a thread, so a slow disk never stalls the screen."""
        assert self._reader is not None
        try:
            lines = self._reader.read_new()
        except Exception as exc:
            # Said once: an unreadable file fails again on every tick.
            if self._problem is None:
                log.error("cannot read %s", self._path, exc_info=exc)
                self._problem = f"Cannot read the log: {type(exc).__name__}: {exc}"
                self.post_message(self.ReadFailed(self._problem))
            return
        finally:
            self._reading = False
        self._problem = None
        if lines:
            self.post_message(self.LinesRead(lines))

    def on_log_screen_lines_read(self, message: LinesRead) -> None:
        self.query_one(LogTail).add(message.lines)

    def on_log_screen_read_failed(self, message: ReadFailed) -> None:
        self.notify(message.note, severity="error")

    def action_next_level(self) -> None:
        tail = self.query_one(LogTail)
        index = LEVELS.index(tail.level)
        # CRITICAL alone is rarely useful, so the cycle stops at ERROR.
        tail.set_level(LEVELS[(index + 1) % 4])
        self._show_title()

    def action_follow(self) -> None:
        tail = self.query_one(LogTail)
        tail.auto_scroll = True
        tail.scroll_end(animate=False)

    def _show_title(self) -> None:
        level = self.query_one(LogTail).level
        where = _tilde(self._path) if self._path is not None else "no log file"
        self.query_one("#log-title", Label).update(f"level ≥ {level}  {where}")


def _tilde(path: Path) -> str:
    """`path` with the home directory written as `~`, as an operator would type it."""
    try:
        return "~/" + str(path.relative_to(Path.home()))
    except ValueError:
        return str(path)
