"""What every subcommand shares: argument types, errors, tables, config and actor."""

from __future__ import annotations

import argparse
import getpass
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import NoReturn

from meld_core.config import Config, default_config_path, load_config
from meld_core.signing import is_valid_id

PROG = "meld-console"
USAGE_ERROR = 2
REFUSED = 1
# The most credit units (or anything else) one argument may name: far below
# SQLite's 2**63 integers, so sums of many grants cannot overflow either.
MAX_WHOLE = 10**15


def fail(message: str, *, status: int = REFUSED) -> NoReturn:
    """Print one `meld-console: error:` line on stderr and exit with `status`."""
    line = " ".join(str(message).split())
    print(f"{PROG}: error: {line}", file=sys.stderr)
    raise SystemExit(status)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line, not a usage block."""

    def error(self, message: str) -> NoReturn:
        fail(f"{message} (see '{self.prog} --help')", status=USAGE_ERROR)


def peer_id(value: str) -> str:
    """An argparse type: a peer or node id of PROTOCOL section 1."""
    if not is_valid_id(value):
        raise argparse.ArgumentTypeError(
            f"invalid id {value!r}: expected [a-z0-9][a-z0-9._-]{{0,62}}"
        )
    return value


def positive_int(value: str) -> int:
    """An argparse type: a whole number of at least 1."""
    number = _whole(value)
    if number < 1:
        raise argparse.ArgumentTypeError(
            f"expected a positive whole number, got {value!r}"
        )
    return number


def non_negative_int(value: str) -> int:
    """An argparse type: a whole number of at least 0."""
    number = _whole(value)
    if number < 0:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of 0 or more, got {value!r}"
        )
    return number


def _whole(value: str) -> int:
    text = value.strip().replace("_", "")
    digits = text.removeprefix("-")
    if not (digits.isascii() and digits.isdigit()):
        raise argparse.ArgumentTypeError(
            f"expected a whole number, got {_shown(value)}"
        )
    # Checked on the text first: int() refuses over 4,300 digits with a traceback.
    if len(digits.lstrip("0")) > len(str(MAX_WHOLE)) or abs(int(text)) > MAX_WHOLE:
        raise argparse.ArgumentTypeError(
            f"expected a whole number of at most {MAX_WHOLE:_} (10**15),"
            f" got {_shown(value)}"
        )
    return int(text)


def _shown(value: str) -> str:
    """A value to quote in an error, cut short so the error stays one line."""
    return repr(value if len(value) <= 24 else value[:20] + "...")


def reason(value: str) -> str:
    """An argparse type: a non-empty reason for a ledger entry."""
    text = " ".join(value.split())
    if not text:
        raise argparse.ArgumentTypeError("a reason must not be empty")
    return text


def config_path(args: argparse.Namespace) -> Path:
    """The configuration file named by `--config`, else `$MELD_HOME/config.toml`."""
    path: Path | None = getattr(args, "config", None)
    return path.expanduser() if path is not None else default_config_path()


def read_config(args: argparse.Namespace) -> Config:
    """The configuration an administrative command works on; it must exist."""
    path = config_path(args)
    if not path.exists():
        fail(f"{path}: no such configuration file (run '{PROG}' once to write one)")
    return load_config(path)


def actor() -> str:
    """Who the ledger records for a change made from the command line."""
    try:
        user = getpass.getuser()
    except (OSError, KeyError):
        user = str(os.getuid())
    return f"cli:{user}"


def when(at: float | None) -> str:
    """A moment as UTC text, or `-` when there is none."""
    if at is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%SZ", time.gmtime(at))


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain-text table; columns of numbers are right-aligned."""
    cells = [[str(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        widths = [max(w, len(c)) for w, c in zip(widths, row, strict=True)]
    numeric = [
        bool(cells) and all(_is_number(row[i]) for row in cells)
        for i in range(len(headers))
    ]

    def line(values: Sequence[str]) -> str:
        parts = [
            v.rjust(w) if right else v.ljust(w)
            for v, w, right in zip(values, widths, numeric, strict=True)
        ]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), *(line(row) for row in cells)])


def _is_number(text: str) -> bool:
    return text == "-" or text.replace(".", "", 1).lstrip("+-").isdigit()
