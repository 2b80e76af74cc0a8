"""Dialogs and narrow lines: long peer ids, duplicate ids, flags at 60 columns."""

from __future__ import annotations

from pathlib import Path

from textual.widgets import Button

from meld_console.app import MeldConsole
from meld_console.screens import CreditDialog, NewPeerDialog, SecretDialog
from meld_console.widgets import PeerTable
from meld_core.types import PeerRecord

from .conftest import running, until
from .frozen import NOW, FrozenNode, frozen_config
from .screen_text import screen_text

# The longest id the protocol allows: 63 characters.
LONG_ID = "agent-" + "0123456789" * 5 + "-eu-west-2"


def frozen_console(tmp_path: Path) -> MeldConsole:
    return MeldConsole(
        FrozenNode(frozen_config(tmp_path)), clock=lambda: NOW, interval_s=60.0
    )


async def test_the_secret_dialog_shows_both_ends_of_a_long_peer_id(
    tmp_path: Path,
) -> None:
    app = frozen_console(tmp_path)
    async with running(app) as pilot:
        app.push_screen(SecretDialog(LONG_ID, "msk_" + "A" * 43, what="new"))
        await pilot.pause()

        text = screen_text(app)
        assert "agent-01234" in text and "-eu-west-2" in text


async def test_the_credit_dialog_shows_both_ends_of_a_long_peer_id(
    tmp_path: Path,
) -> None:
    app = frozen_console(tmp_path)
    async with running(app) as pilot:
        app.push_screen(CreditDialog(LONG_ID, kind="grant", read_peer=_unknown))
        await pilot.pause()

        text = screen_text(app)
        assert "agent-01234" in text and "-eu-west-2" in text
        assert f"no peer {LONG_ID[:20]}" in text


async def _unknown(peer_id: str) -> PeerRecord | None:
    return None


async def test_add_peer_refuses_an_id_the_filter_hides(tmp_path: Path) -> None:
    app = frozen_console(tmp_path)
    async with running(app) as pilot:
        await pilot.press("2")
        await until(
            lambda: "agent-7" in app.screen.query_one(PeerTable).rows,
            pilot,
            what="peers",
        )
        await pilot.press("slash", *"meld", "enter")
        await pilot.press("a", *"agent-7")
        await pilot.pause()

        dialog = app.screen
        assert isinstance(dialog, NewPeerDialog)
        assert "agent-7 already exists" in screen_text(app)
        assert dialog.query_one("#confirm", Button).disabled


async def test_a_narrow_tab_line_keeps_the_read_only_and_paused_flags(
    tmp_path: Path,
) -> None:
    app = MeldConsole(
        FrozenNode(frozen_config(tmp_path)),
        read_only=True,
        clock=lambda: NOW,
        interval_s=60.0,
    )
    async with app.run_test(size=(60, 20)) as pilot:
        await app.node_ready.wait()
        await pilot.press("2", "p")
        await pilot.pause()

        tabs = screen_text(app).splitlines()[1]
        assert "read-only paused" in tabs
        assert "2 Peers" in tabs
