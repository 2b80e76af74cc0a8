"""The stress panel fires a real run at the console's own node."""

from __future__ import annotations

from dataclasses import replace

from textual.widgets import Button, DataTable, Input, Label, Select

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


async def test_enter_starts_a_run_as_the_screen_opens(config: Config) -> None:
    async with console(config) as (app, _node, pilot):
        await pilot.press("4")
        await until(lambda: isinstance(app.screen, StressScreen), pilot, what="stress")
        screen = app.screen
        screen.query_one("#stress-levels", Input).value = "1"
        await pilot.press("enter")

        assert not screen.query_one("#stress-model", Select).expanded
        await until(lambda: "Finished." in screen_text(app), pilot, what="the run")
        assert screen.query_one("#stress-results", DataTable).row_count == 1


async def test_failed_requests_are_counted_by_status_and_error_type(
    config: Config,
) -> None:
    backends = tuple(
        replace(b, ttft_s=0.5, max_concurrency=1, parallel=1, max_queue=1)
        for b in config.backends
    )
    tight = replace(config, backends=backends)
    async with console(tight) as (app, _node, pilot):
        await pilot.press("4")
        await until(lambda: isinstance(app.screen, StressScreen), pilot, what="stress")
        app.screen.query_one("#stress-levels", Input).value = "6"
        await pilot.press("enter")

        await until(lambda: "Finished." in screen_text(app), pilot, what="the run")
        status = str(app.screen.query_one("#stress-status", Label).render())
        assert status == ("Finished. 6 requests, 4 failed: 429 overloaded x4."), status


async def test_the_status_names_no_level_before_the_first_answer(
    config: Config,
) -> None:
    backends = tuple(replace(b, ttft_s=5.0) for b in config.backends)
    slow = replace(config, backends=backends)
    async with console(slow) as (app, _node, pilot):
        await pilot.press("4")
        await until(lambda: isinstance(app.screen, StressScreen), pilot, what="stress")
        await pilot.press("ctrl+r")
        for _ in range(3):
            app.publish()
            await pilot.pause()

        text = screen_text(app)
        assert "Starting: sim-small at levels 1,5,10,20." in text
        assert "Level 0" not in text
        footer = text.splitlines()[-1]
        assert "Stop" in footer and "Start" not in footer
        await pilot.press("escape")
        await until(lambda: not app.stress_running, pilot, what="the run stopped")
        assert "Start" in screen_text(app).splitlines()[-1]


async def test_read_only_disables_the_stress_form(config: Config) -> None:
    async with console(config, read_only=True) as (app, _node, pilot):
        await pilot.press("4")
        await until(lambda: isinstance(app.screen, StressScreen), pilot, what="stress")
        screen = app.screen
        assert screen.query_one("#stress-start", Button).disabled
        assert screen.query_one("#stress-levels", Input).disabled
        assert "Read-only console" in screen_text(app)
