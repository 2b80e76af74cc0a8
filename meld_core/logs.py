"""Logging for the node: a private rotating file in the data directory, and stderr."""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from io import TextIOWrapper

from .config import Config
from .signing import SECRET_PATTERN

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
MAX_BYTES = 10 * 1024 * 1024
BACKUP_COUNT = 5
REDACTED = "msk_[redacted]"

# Libraries that log every HTTP exchange at INFO would drown the node's own lines.
_CHATTY = ("httpx", "httpcore", "aiosqlite", "hpack")


def redact(text: str) -> str:
    """`text` with anything shaped like a peer secret replaced."""
    return SECRET_PATTERN.sub(REDACTED, text)


class SecretFilter(logging.Filter):
    """Rewrites a record's message so no peer secret reaches a handler."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class RedactingFormatter(logging.Formatter):
    """Redacts the finished line as well, which covers tracebacks and stack text."""

    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class PrivateRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A rotating file handler whose files, rotated ones included, are mode 0600."""

    def _open(self) -> TextIOWrapper:
        fd = os.open(self.baseFilename, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        os.close(fd)
        # A file created by an older version or by hand may be wider open.
        os.chmod(self.baseFilename, 0o600)
        return super()._open()


def log_level() -> int:
    """The level named by `MELD_LOG_LEVEL` (DEBUG, INFO, ...), INFO by default."""
    level = logging.getLevelName(os.environ.get("MELD_LOG_LEVEL", "").strip().upper())
    return level if isinstance(level, int) else logging.INFO


# Handlers of the last setup_logging call, so a second call replaces them.
_installed: list[logging.Handler] = []


def setup_logging(config: Config, *, stderr: bool) -> None:
    """Send the node's logs to `config.log_path` and, if asked, to stderr."""
    root = logging.getLogger()
    while _installed:
        handler = _installed.pop()
        root.removeHandler(handler)
        handler.close()

    config.log_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    file_handler = PrivateRotatingFileHandler(
        config.log_path, maxBytes=MAX_BYTES, backupCount=BACKUP_COUNT, encoding="utf-8"
    )
    _installed.append(file_handler)
    if stderr:
        _installed.append(logging.StreamHandler(sys.stderr))
    level = log_level()
    for handler in _installed:
        handler.setFormatter(RedactingFormatter(LOG_FORMAT))
        handler.addFilter(SecretFilter())
        handler.setLevel(level)
        root.addHandler(handler)
    root.setLevel(level)

    for name in _CHATTY:
        logging.getLogger(name).setLevel(max(level, logging.WARNING))
