"""A ledger or a log file that breaks is reported, and the console keeps running."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from meld_console.app import MeldConsole
from meld_console.screens import LogScreen, PeersScreen
from meld_core.types import PeerRecord

from .conftest import running, until
from .frozen import NOW, FrozenNode, frozen_config


class BrokenLedgerNode(FrozenNode):
    """A node whose ledger raises what a full or failing disk raises."""

    async def peers(self) -> list[PeerRecord]:
        raise sqlite3.OperationalError("disk I/O error")


def _notes(app: MeldConsole) -> list[str]:
    # run_test draws no toasts, so the notices are read where the app keeps them.
    return [notification.message for notification in app._notifications]


async def test_a_ledger_error_is_reported_and_the_console_keeps_running(
    tmp_path: Path,
) -> None:
    node = BrokenLedgerNode(frozen_config(tmp_path))
    app = MeldConsole(node, clock=lambda: NOW, interval_s=0.05)
    async with running(app) as pilot:
        await pilot.press("2")
        await until(lambda: bool(_notes(app)), pilot, what="an error notice")
        for _ in range(5):  # several more ticks, each failing again
            app.publish()
            await app.workers.wait_for_complete()
            await pilot.pause()

        assert app.is_running and app.return_code is None
        assert isinstance(app.screen, PeersScreen)
        assert _notes(app) == [
            "list peers failed: OperationalError: disk I/O error (traceback in the log)"
        ]


async def test_an_unreadable_log_file_is_reported_and_the_console_keeps_running(
    tmp_path: Path,
) -> None:
    unreadable = tmp_path / "node.log"
    unreadable.mkdir()  # opening a directory fails the way a bad file does
    node = FrozenNode(frozen_config(tmp_path))
    app = MeldConsole(node, clock=lambda: NOW, interval_s=0.05, log_path=unreadable)
    async with running(app) as pilot:
        await pilot.press("5")
        await until(lambda: bool(_notes(app)), pilot, what="an error notice")

        assert app.is_running and app.return_code is None
        assert isinstance(app.screen, LogScreen)
        assert "Cannot read the log" in _notes(app)[0]
