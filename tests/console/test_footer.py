"""The footer names the keys that work where the operator is, and fits 80 columns."""

from __future__ import annotations

from pathlib import Path

from meld_console.app import MeldConsole
from meld_console.screens import PeersScreen, StatementScreen
from meld_console.widgets import PeerTable
from meld_core.types import Transfer

from .conftest import running, until
from .frozen import NOW, FrozenNode, frozen_config
from .screen_text import screen_text


class CountingStatements(FrozenNode):
    """A frozen node that counts statement reads."""

    statements = 0

    async def statement(self, peer_id: str, *, limit: int = 50) -> list[Transfer]:
        self.statements += 1
        return await super().statement(peer_id, limit=limit)


def frozen_console(tmp_path: Path, node: FrozenNode | None = None) -> MeldConsole:
    log_path = tmp_path / "node.log"
    log_path.write_text("2026-05-28 20:26:38,001 INFO    a: b\n", encoding="utf-8")
    return MeldConsole(
        node or FrozenNode(frozen_config(tmp_path)),
        clock=lambda: NOW,
        interval_s=60.0,
        log_path=log_path,
    )


def footer(app: MeldConsole) -> str:
    return screen_text(app).splitlines()[-1]


async def test_each_screen_shows_its_own_keys_in_the_footer(tmp_path: Path) -> None:
    app = frozen_console(tmp_path)
    async with running(app) as pilot:
        await pilot.press("2")
        await until(lambda: "Statement" in footer(app), pilot, what="peer keys")
        peers = footer(app)
        for shown in ("⏎ Statement", "gd Credits", "a Add", "r Rotate", "x On/off"):
            assert shown in peers
        for shown in ("/ Filter", "sS Sort", "? Help", "q Quit"):
            assert shown in peers

        await pilot.press("5")
        await until(lambda: "Follow" in footer(app), pilot, what="log keys")
        assert "end Follow" in footer(app) and "l Level" in footer(app)

        await pilot.press("4")
        await until(lambda: "Start" in footer(app), pilot, what="stress keys")
        assert "Stop" not in footer(app)


async def test_a_dialog_shows_its_own_keys_not_the_screen_s(tmp_path: Path) -> None:
    app = frozen_console(tmp_path)
    async with running(app) as pilot:
        await pilot.press("2")
        await until(lambda: "Statement" in footer(app), pilot, what="peer keys")
        for key in ("g", "a", "r"):
            app.screen.query_one(PeerTable).focus()
            await pilot.press(key)
            await pilot.pause()
            assert "esc Cancel" in footer(app)
            assert "Grant" not in footer(app) and "Quit" not in footer(app)
            await pilot.press("escape")
            await pilot.pause()


async def test_one_enter_opens_one_statement_and_enter_in_the_filter_filters(
    tmp_path: Path,
) -> None:
    node = CountingStatements(frozen_config(tmp_path))
    app = frozen_console(tmp_path, node)
    async with running(app) as pilot:
        await pilot.press("2")
        await until(lambda: "Statement" in footer(app), pilot, what="peer keys")
        app.screen.query_one(PeerTable).focus()
        await pilot.press("enter")
        await until(
            lambda: isinstance(app.screen, StatementScreen), pilot, what="statement"
        )
        await app.workers.wait_for_complete()
        assert node.statements == 1
        await pilot.press("escape")

        await pilot.press("slash", *"agent", "enter")
        await pilot.pause()
        assert isinstance(app.screen, PeersScreen)
        assert node.statements == 1
        assert "filter “agent”" in screen_text(app)


def _palette(app: MeldConsole) -> set[str]:
    return {command.title for command in app.get_system_commands(app.screen)}


async def test_the_palette_offers_the_actions_of_the_screen_in_view(
    tmp_path: Path,
) -> None:
    app = frozen_console(tmp_path)
    async with running(app) as pilot:
        await pilot.press("2")
        await until(lambda: app.current_mode == "peers", pilot, what="peers")
        peers = _palette(app)
        for title in (
            "Sort by the next column",
            "Reverse the sort",
            "Clear the filter",
        ):
            assert title in peers
        assert "Grant credits" in peers

        await pilot.press("4")
        await until(lambda: app.current_mode == "stress", pilot, what="stress")
        assert "Start a stress run" in _palette(app)
        app.stress_running = True
        assert "Stop the stress run" in _palette(app)
        assert "Start a stress run" not in _palette(app)
        app.stress_running = False

        await pilot.press("5")
        await until(lambda: app.current_mode == "log", pilot, what="log")
        assert {"Next log level", "Follow the log"} <= _palette(app)
        assert "Grant credits" not in _palette(app)
