"""`meld-console`: the console, the headless node, and the operator's commands."""

from __future__ import annotations

import argparse
import sqlite3
import sys
from collections.abc import Sequence
from pathlib import Path

from meld_core import __version__
from meld_core.errors import MeldError

from .commands import admin, serve, stress
from .commands.common import PROG, Parser, fail


def build_parser() -> argparse.ArgumentParser:
    """The whole command line, PROTOCOL section 8."""
    # Subcommands take --config too; SUPPRESS keeps their absent option from
    # overwriting one given before the subcommand.
    common = Parser(add_help=False)
    common.add_argument(
        "--config", type=Path, default=argparse.SUPPRESS, metavar="FILE",
        help="configuration file (default $MELD_HOME/config.toml, MELD_HOME=~/.meld)",
    )  # fmt: skip

    parser = Parser(
        prog=PROG,
        description="Run a MELD node inside a terminal console, or administer it. "
        "With no command, open the console (a first run writes a default "
        "configuration).",
    )
    parser.add_argument(
        "--config", type=Path, default=None, metavar="FILE",
        help="configuration file (default $MELD_HOME/config.toml, MELD_HOME=~/.meld)",
    )  # fmt: skip
    parser.add_argument(
        "--read-only", action="store_true",
        help="open the console without peer and credit commands",
    )  # fmt: skip
    parser.add_argument(
        "--version", action="version", version=f"%(prog)s {__version__}"
    )
    parser.set_defaults(run=serve.console_command)

    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    serve.add_parser(commands, common)
    admin.add_parsers(commands, common)
    stress.add_parser(commands, common)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    """Parse the command line, run the command, exit with its status."""
    args = build_parser().parse_args(argv)
    try:
        status = args.run(args)
    except MeldError as exc:
        fail(exc.message)
    except (OSError, sqlite3.Error) as exc:
        fail(_describe(exc))
    except KeyboardInterrupt:
        print(file=sys.stderr)
        raise SystemExit(130) from None
    raise SystemExit(status)


def _describe(exc: Exception) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f"{exc.filename}: " if exc.filename else ""
        return f"{where}{exc.strerror}"
    return str(exc) or type(exc).__name__


if __name__ == "__main__":
    main()
