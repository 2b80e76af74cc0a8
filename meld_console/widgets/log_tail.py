"""The node's log file, tailed, showing only lines at or above a chosen level."""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

from textual.widgets import Log

from ..logs import LEVELS, LogLine


class LogTail(Log):
    """Keeps the last lines it was given and shows those at or above `level`."""

    DEFAULT_CSS = """
    LogTail {
        height: 1fr;
        background: $surface;
    }
    """

    def __init__(
        self,
        *,
        keep: int = 2000,
        level: str = "INFO",
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(
            max_lines=keep, auto_scroll=True, name=name, id=id, classes=classes
        )
        self._kept: deque[LogLine] = deque(maxlen=keep)
        self._level = level

    @property
    def level(self) -> str:
        """The lowest level shown."""
        return self._level

    def add(self, lines: Iterable[LogLine]) -> None:
        """Append lines read from the file, showing those that pass the filter."""
        fresh = list(lines)
        self._kept.extend(fresh)
        shown = [line.short for line in fresh if self._passes(line)]
        if shown:
            self.write_lines(shown)

    def set_level(self, level: str) -> None:
        """Show only lines at `level` or above, re-filtering what is kept."""
        if level not in LEVELS:
            raise ValueError(f"unknown log level: {level}")
        self._level = level
        self.clear()
        self.write_lines([line.short for line in self._kept if self._passes(line)])

    def _passes(self, line: LogLine) -> bool:
        return line.rank >= LEVELS.index(self._level)
