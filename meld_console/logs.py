"""Console logging: all of it to the node's file, none of it on the screen."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path

from meld_core.config import Config
from meld_core.logs import setup_logging

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
# Lines as meld_core.logs writes them: date, time, level (padded), logger, message.
_LINE = re.compile(r"^\S+ \S+ (DEBUG|INFO|WARNING|ERROR|CRITICAL)\b")
# The same, in parts: the date and the milliseconds are dropped on screen, and
# the logger keeps its last name, so a line's message starts within 80 columns.
_PARTS = re.compile(
    r"^\S+ (\d\d:\d\d:\d\d)[,.]\d+ (DEBUG|INFO|WARNING|ERROR|CRITICAL) +"
    r"(?:[\w.]*\.)?([\w]+): "
)

log = logging.getLogger(__name__)


def configure_console_logging(config: Config) -> None:
    """Log to the node's file only: a stream handler would paint over the screen."""
    setup_logging(config, stderr=False)
    for logger in (logging.getLogger(), *_known_loggers()):
        for handler in list(logger.handlers):
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler
            ):
                logger.removeHandler(handler)
    logging.captureWarnings(True)
    log.info("console logging to %s", config.log_path)


def _known_loggers() -> list[logging.Logger]:
    manager = logging.Logger.manager
    return [
        logger
        for logger in manager.loggerDict.values()
        if isinstance(logger, logging.Logger)
    ]


@dataclass(frozen=True, slots=True)
class LogLine:
    """One line of the node's log file with the level it was written at."""

    text: str
    level: str

    @property
    def short(self) -> str:
        """The line as the Log screen shows it: `20:26:38 INFO    node: message`."""
        match = _PARTS.match(self.text)
        if match is None:
            return self.text  # a traceback or a foreign line, as written
        clock, level, logger = match.groups()
        return f"{clock} {level:<7} {logger}: {self.text[match.end() :]}"

    @property
    def rank(self) -> int:
        """The level's position in LEVELS: higher is more severe."""
        return LEVELS.index(self.level)


def parse_line(text: str, previous_level: str = "INFO") -> LogLine:
    """A log line with its level; a traceback line keeps the level before it."""
    match = _LINE.match(text)
    return LogLine(text, match.group(1) if match else previous_level)


class LogReader:
    """Reads the lines appended to a log file since the last read; survives rotation."""

    def __init__(self, path: Path, *, backlog_bytes: int = 64_000) -> None:
        self._path = path
        self._backlog = backlog_bytes
        self._offset: int | None = None
        self._level = "INFO"

    def read_new(self) -> list[LogLine]:
        """Whole lines written since the last call; the first call reads a backlog."""
        try:
            size = self._path.stat().st_size
        except FileNotFoundError:
            return []
        skip_partial = False
        skipped = 0
        if self._offset is None:
            self._offset = max(0, size - self._backlog)
            skip_partial = self._offset > 0
        if size < self._offset:
            self._offset = 0
        if size - self._offset > self._backlog:
            # Written while the screen was hidden (or in a burst): reading it all
            # takes most of a second for 50 MB, to show lines that scroll away.
            skipped = size - self._backlog - self._offset
            self._offset = size - self._backlog
            skip_partial = True
        if size == self._offset:
            return []
        with self._path.open("rb") as handle:
            handle.seek(self._offset)
            data = handle.read(size - self._offset)
        end = data.rfind(b"\n")
        if end < 0:
            return []
        data = data[: end + 1]
        self._offset += len(data)
        texts = data.decode("utf-8", errors="replace").splitlines()
        if skip_partial and texts:
            texts = texts[1:]
        lines = []
        if skipped:
            note = f"… {skipped:,} bytes of log skipped to catch up (see the file)"
            lines.append(LogLine(note, "WARNING"))
        for text in texts:
            line = parse_line(text, self._level)
            self._level = line.level
            lines.append(line)
        return lines
