"""Stress runs from the console: rising concurrency levels against this node."""

from __future__ import annotations

import asyncio
import logging
from collections import Counter

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.message import Message
from textual.widgets import Button, DataTable, Input, Label, Select

from meld_core.errors import MeldError
from meld_core.stress import MAX_LEVEL, RequestOutcome, StressResult, run_stress
from meld_core.types import NodeSnapshot

from .. import format as fmt
from .base import LiveScreen

log = logging.getLogger(__name__)

DEFAULT_LEVELS = "1,5,10,20"
RESULT_COLUMNS = (
    ("level", 5),
    ("sent", 5),
    ("ok", 5),
    ("failed", 6),
    ("p50", 7),
    ("p95", 7),
    ("p99", 7),
    ("req/s", 6),
    ("queue", 5),
)


def parse_levels(text: str) -> list[int] | None:
    """Levels such as `1,5,10,20`, or None when the text is not a list of them."""
    parts = [part.strip() for part in text.split(",") if part.strip()]
    if not parts or not all(part.isdigit() for part in parts):
        return None
    levels = [int(part) for part in parts]
    return levels if all(1 <= level <= MAX_LEVEL for level in levels) else None


class StressScreen(LiveScreen):
    """Fires signed requests at this node as its console peer; one row per level."""

    MODE = "stress"

    BINDINGS = [
        # Enter starts a run wherever the focus is, as the docs promise; without
        # priority the focused Select would take it and open its list (space and
        # the arrows still do). The focus stays off the text boxes, so the number
        # keys and q keep working on this screen.
        Binding("enter,ctrl+r", "start", "Start", priority=True),
        Binding("escape", "stop", "Stop"),
    ]

    class LevelFinished(Message):
        """A concurrency level of the run has finished."""

        def __init__(self, result: StressResult) -> None:
            super().__init__()
            self.result = result

    class RunEnded(Message):
        """The run finished, was stopped, or failed; `note` says which."""

        def __init__(self, note: str, *, failed: bool = False) -> None:
            super().__init__()
            self.note = note
            self.failed = failed

    def __init__(self) -> None:
        super().__init__()
        self._level: int | None = None
        """The level of the latest outcome; None until the run's first one."""
        self._done = 0
        self._failures: Counter[str] = Counter()
        """Failed requests of the run by status and error type, `429 rate_limited`."""

    def compose_body(self) -> ComposeResult:
        node = self.console.node
        models = [m for b in node.config.backends for m in b.models]
        yield Label(
            f"Stress as {node.console_peer}; the load comes from this process",
            classes="section-title",
        )
        with Horizontal(id="stress-form"):
            yield Select(
                [(model, model) for model in models],
                value=models[0],
                allow_blank=False,
                id="stress-model",
            )
            yield Input(DEFAULT_LEVELS, placeholder="levels", id="stress-levels")
            yield Input(
                placeholder="per level",
                restrict=r"[0-9]*",
                max_length=6,
                id="stress-count",
            )
            yield Button("Start", id="stress-start", variant="primary")
        idle = "Idle. Enter or ctrl+r starts, levels one after another; Esc stops."
        if self.console.read_only:
            idle = "Read-only console: a stress run spends credits, so none starts."
        yield Label(idle, id="stress-status")
        yield DataTable(id="stress-results", cursor_type="none")

    def on_mount(self) -> None:
        table = self.query_one("#stress-results", DataTable)
        for label, width in RESULT_COLUMNS:
            table.add_column(label, width=width, key=label)
        if self.console.read_only:
            for widget in self.query("#stress-form > *"):
                widget.disabled = True

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        # A run spends the console peer's credits, so it changes money.
        running = self.console.stress_running
        if action == "start":
            # An open model list keeps Enter, to pick the model.
            picking = self.query_one("#stress-model", Select).expanded
            return not (self.console.read_only or running or picking)
        if action == "stop":
            return running
        return True

    def show_snapshot(self, snapshot: NodeSnapshot) -> None:
        if self.console.stress_running and self._level is not None:
            self._show_status(f"Level {self._level}: {self._tally()}.")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "stress-start":
            self.action_start()

    def action_start(self) -> None:
        if self.console.read_only:
            self.notify(
                "Read-only console: a stress run spends credits.", severity="warning"
            )
            return
        if self.console.stress_running:
            return
        levels = parse_levels(self.query_one("#stress-levels", Input).value)
        if levels is None:
            self._show_status(
                f"Levels are whole numbers from 1 to {MAX_LEVEL}, such as 1,5,10."
            )
            return
        count_text = self.query_one("#stress-count", Input).value
        count = (
            int(count_text) if count_text.isdigit() and int(count_text) > 0 else None
        )
        model = str(self.query_one("#stress-model", Select).value)
        self.query_one("#stress-results", DataTable).clear()
        self._level = None
        self._done = 0
        self._failures.clear()
        self.console.stress_running = True
        self.query_one("#stress-start", Button).disabled = True
        self.refresh_bindings()
        self._show_status(f"Starting: {model} at levels {','.join(map(str, levels))}.")
        self._run(model, levels, count)

    def action_stop(self) -> None:
        self.workers.cancel_group(self, "stress")

    @work(group="stress", exclusive=True)
    async def _run(self, model: str, levels: list[int], count: int | None) -> None:
        node = self.console.node
        try:
            await run_stress(
                node.url,
                node.console_peer,
                node.console_secret,
                model,
                levels,
                requests_per_level=count,
                on_result=self._counted,
                on_level=self._level_finished,
            )
        except MeldError as exc:
            self.post_message(
                self.RunEnded(f"The run failed: {exc.message}", failed=True)
            )
        except Exception as exc:
            # A bug or a broken socket ends the run, never the console and its node.
            log.error("the stress run failed", exc_info=exc)
            note = f"The run failed: {type(exc).__name__}: {exc}"
            self.post_message(self.RunEnded(note, failed=True))
        except asyncio.CancelledError:
            self.post_message(self.RunEnded("Stopped."))
            raise
        else:
            self.post_message(self.RunEnded("Finished."))

    def _level_finished(self, result: StressResult) -> None:
        self.post_message(self.LevelFinished(result))

    def _counted(self, level: int, outcome: RequestOutcome) -> None:
        self._level = level
        self._done += 1
        if not outcome.ok:
            kind = f"{outcome.status} {outcome.error_type or ''}".rstrip()
            self._failures[kind] += 1

    def on_stress_screen_level_finished(self, message: LevelFinished) -> None:
        result = message.result
        self.query_one("#stress-results", DataTable).add_row(
            str(result.level),
            str(result.sent),
            str(result.ok),
            str(result.failed),
            fmt.millis(result.p50_ms),
            fmt.millis(result.p95_ms),
            fmt.millis(result.p99_ms),
            fmt.rate(result.throughput_rps),
            str(result.queue_positions_seen),
        )

    def on_stress_screen_run_ended(self, message: RunEnded) -> None:
        self.console.stress_running = False
        self.query_one("#stress-start", Button).disabled = False
        self.refresh_bindings()
        self._show_status(f"{message.note} {self._tally()}.")
        if message.failed:
            self.notify(message.note, severity="error")

    def _tally(self) -> str:
        """Requests done and failed so far, the failures by kind, commonest first."""
        failed = sum(self._failures.values())
        text = f"{self._done} requests, {failed} failed"
        if failed:
            kinds = ", ".join(f"{k} x{n}" for k, n in self._failures.most_common())
            text += f": {kinds}"
        return text

    def _show_status(self, text: str) -> None:
        self.query_one("#stress-status", Label).update(text)
