"""The stress panel fires a real run at the console's own node."""

from __future__ import annotations

from dataclasses import replace

from textual.widgets import DataTable, Input

from meld_console.screens import ConfirmDialog, StressScreen
from meld_core.config import Config

from .conftest import console, until
from .screen_text import screen_text


async def test_a_run_fills_one_row_per_level_and_ends(config: Config) -> None:
    async with console(config) as (app, _node, pilot):
        await pilot.press("4")
        await until(lambda: isinstance(app.screen, StressScreen), pilot, what="stress")
        screen = app.screen
        screen.query_one("#stress-levels", Input).value = "1,2"
        screen.query_one("#stress-count", Input).value = "3"
        screen.query_one("#stress-levels", Input).focus()
        await pilot.press("enter")

        table = screen.query_one("#stress-results", DataTable)
        await until(lambda: not app.stress_running, pilot, what="the run's end")
        rows = [table.get_row_at(i) for i in range(table.row_count)]
        assert [(r[0], r[1], r[2], r[3]) for r in rows] == [
            ("1", "3", "3", "0"),
            ("2", "3", "3", "0"),
        ]
        assert "Finished. 6 requests, 0 failed." in screen_text(app)


async def test_quit_during_a_run_asks_and_escape_stops_the_run(config: Config) -> None:
    backends = tuple(replace(b, ttft_s=5.0) for b in config.backends)
    slow = replace(config, backends=backends)
    async with console(slow) as (app, _node, pilot):
        await pilot.press("4")
        await until(lambda: isinstance(app.screen, StressScreen), pilot, what="stress")
        await pilot.press("ctrl+r")
        assert app.stress_running
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("escape")  # no: keep running
        assert app.stress_running and not app.stopping
        await pilot.press("escape")  # on the panel: stop the run
        await until(lambda: not app.stress_running, pilot, what="the run stopped")
        assert "Stopped." in screen_text(app)


async def test_read_only_cannot_start_a_run(config: Config) -> None:
    async with console(config, read_only=True) as (app, _node, pilot):
        await pilot.press("4")
        await until(lambda: isinstance(app.screen, StressScreen), pilot, what="stress")
        await pilot.press("ctrl+r")
        app.screen.action_start()
        await pilot.pause()
        assert not app.stress_running
