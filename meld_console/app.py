"""The operator console: a Textual app that runs a MELD node inside its own loop."""

from __future__ import annotations

import asyncio
import getpass
import logging
import signal
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import ClassVar

from textual import work
from textual.app import App, SystemCommand
from textual.binding import Binding, BindingType
from textual.drivers.linux_driver import LinuxDriver
from textual.message import Message
from textual.screen import ModalScreen, Screen

from meld_core.config import Config
from meld_core.types import NodeSnapshot

from .logs import configure_console_logging
from .port import NodePort
from .screens import (
    TABS,
    ConfirmDialog,
    DashboardScreen,
    HelpScreen,
    LiveScreen,
    LogScreen,
    NetworkScreen,
    PeersScreen,
    StressScreen,
)
from .terminal import HangupSafeDriver

log = logging.getLogger(__name__)

INTERVALS_S = (0.5, 1.0, 2.0, 5.0, 10.0)
DEFAULT_INTERVAL_S = 1.0
# Actions that make no sense while a dialog has the keyboard.
_SCREEN_LEVEL = frozenset(
    {"switch_mode", "toggle_pause", "faster", "slower", "help", "request_quit"}
)


def _operator() -> str:
    try:
        return f"console:{getpass.getuser()}"
    except (KeyError, OSError):
        return "console"


class MeldConsole(App[int]):
    """Runs a node and renders its snapshots; every ledger command runs in a worker."""

    TITLE = "MELD"
    CSS_PATH = "console.tcss"
    MODES = {
        "dashboard": DashboardScreen,
        "peers": PeersScreen,
        "network": NetworkScreen,
        "stress": StressScreen,
        "log": LogScreen,
    }
    DEFAULT_MODE = "dashboard"

    BINDINGS: ClassVar[list[BindingType]] = [
        *(
            Binding(str(n), f"switch_mode('{mode}')", title, show=False)
            for n, (mode, title) in enumerate(TABS, start=1)
        ),
        Binding("question_mark,f1", "help", "Help"),
        Binding("p", "toggle_pause", "Pause", show=False),
        Binding("plus", "faster", "Faster", show=False),
        Binding("minus", "slower", "Slower", show=False),
        Binding("q", "request_quit", "Quit"),
    ]

    class NodeStarted(Message):
        """The node is serving; snapshots can be taken."""

    class ShutdownRequested(Message):
        """A signal or a command asked the console to stop the node and exit."""

        def __init__(self, reason: str) -> None:
            super().__init__()
            self.reason = reason

    def __init__(
        self,
        node: NodePort,
        *,
        read_only: bool = False,
        snapshot_source: Callable[[], NodeSnapshot] | None = None,
        clock: Callable[[], float] = time.time,
        interval_s: float = DEFAULT_INTERVAL_S,
        log_path: Path | None = None,
    ) -> None:
        """Args:
        node: the node to run; the console starts it on mount and stops it on exit.
        snapshot_source: where snapshots come from; `node.snapshot` unless pinned,
            as the snapshot tests do.
        clock: wall-clock time for "seen ago" columns; fixed in snapshot tests.
        log_path: the file the Log screen tails; the node's log by default.
        """
        super().__init__()
        self.node = node
        self.read_only = read_only
        self.clock = clock
        self.interval_s = interval_s
        self.log_path = log_path if log_path is not None else node.config.log_path
        self.actor = _operator()
        self.paused = False
        """Whether refresh is paused (`p`)."""
        self.stopping = False
        """Set once a shutdown began; nothing refreshes after it."""
        self.stress_running = False
        """Whether the Stress screen has a run going; quitting then asks first."""
        self.snapshot: NodeSnapshot | None = None
        """The latest snapshot taken, shown at once by a screen coming into view."""
        self.node_ready = asyncio.Event()
        """Set once the node serves."""
        self._source = snapshot_source or node.snapshot
        self._node_running = False

    # -- the node's life --------------------------------------------------------

    def on_mount(self) -> None:
        self._start_node()

    @work(group="node", exit_on_error=False)
    async def _start_node(self) -> None:
        try:
            await self.node.start()
        except Exception as exc:
            log.exception("the node did not start")
            self.exit(return_code=1, message=f"meld: the node did not start: {exc}")
            return
        self._node_running = True
        log.info("node started at %s", self.node.url)
        self.post_message(self.NodeStarted())

    def on_meld_console_node_started(self, message: NodeStarted) -> None:
        self.node_ready.set()
        self._tick()

    async def stop_node(self) -> None:
        """Stop the node once; safe to call from every exit path."""
        if not self._node_running:
            return
        self._node_running = False
        log.info("stopping the node")
        await self.node.stop()
        log.info("node stopped")

    def shutdown(self, reason: str) -> None:
        """Stop the node gracefully, then exit; a second call does nothing."""
        if self.stopping:
            return
        self.stopping = True
        log.info("shutting down: %s", reason)
        for worker in self.workers:
            # A stress run would only fire at a node that is going away.
            if worker.group == "stress":
                worker.cancel()
        if isinstance(self.screen, LiveScreen):
            self.screen.show_message("stopping the node: in-flight requests finish…")
        self._stop_then_exit()

    @work(group="node", exit_on_error=False)
    async def _stop_then_exit(self) -> None:
        try:
            await self.stop_node()
        finally:
            self.exit(0)

    def on_meld_console_shutdown_requested(self, message: ShutdownRequested) -> None:
        self.shutdown(message.reason)

    async def on_unmount(self) -> None:
        # Every way out of the app ends here, a crash included: no hold is left.
        await self.stop_node()

    # -- refresh ----------------------------------------------------------------

    def _tick(self) -> None:
        if self.stopping or not self.screen_stack:
            return
        try:
            if not self.paused:
                self.publish()
        finally:
            # Re-armed only once this tick has finished, so ticks never stack.
            self.set_timer(self.interval_s, self._tick)

    def publish(self) -> None:
        """Take a snapshot; give it to the screen in view unless a dialog hides it."""
        if self.stopping or not self.screen_stack:
            return
        self.snapshot = self._source()
        screen = self.screen
        if isinstance(screen, LiveScreen):
            screen.tick(self.snapshot)

    def action_toggle_pause(self) -> None:
        self.paused = not self.paused
        self._show_state()
        self.notify("Refresh paused." if self.paused else "Refresh resumed.")

    def action_faster(self) -> None:
        self._set_interval(-1)

    def action_slower(self) -> None:
        self._set_interval(+1)

    def _set_interval(self, step: int) -> None:
        index = min(
            range(len(INTERVALS_S)), key=lambda i: abs(INTERVALS_S[i] - self.interval_s)
        )
        index = max(0, min(len(INTERVALS_S) - 1, index + step))
        self.interval_s = INTERVALS_S[index]
        self._show_state()

    def _show_state(self) -> None:
        if isinstance(self.screen, LiveScreen):
            self.screen.show_state()

    # -- keys -------------------------------------------------------------------

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        return not (action in _SCREEN_LEVEL and isinstance(self.screen, ModalScreen))

    def action_help(self) -> None:
        self.push_screen(HelpScreen(self.key_sections()))

    def key_sections(self) -> list[tuple[str, list[tuple[str, str]]]]:
        """Every key of the console, by screen, for the help screen."""
        sections = [("Everywhere", self._keys(self.BINDINGS))]
        sections[0][1].extend([("ctrl+p", "Command palette"), ("ctrl+q", "Quit")])
        for mode, title in TABS:
            screen_class = self.MODES[mode]
            bindings = getattr(screen_class, "BINDINGS", [])
            keys = self._keys(bindings)
            if mode == "peers" and self.read_only:
                keys.append(("", "(read-only: money and peer keys are off)"))
            if keys:
                sections.append((title, keys))
        sections.append(
            ("Dialogs", [("tab", "Next field or button"), ("escape", "Cancel")])
        )
        return sections

    def _keys(self, bindings: Iterable[BindingType]) -> list[tuple[str, str]]:
        keys: dict[str, list[str]] = {}
        for binding in Binding.make_bindings(bindings):
            shown = self.get_key_display(binding)
            keys.setdefault(binding.description, [])
            if shown not in keys[binding.description]:
                keys[binding.description].append(shown)
        return [(" ".join(shown), what) for what, shown in keys.items()]

    async def action_request_quit(self) -> None:
        if not self.stress_running:
            self.shutdown("quit")
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.shutdown("quit during a stress run")

        question = "A stress run is going. Quit, stopping the run and the node?"
        self.push_screen(ConfirmDialog(question, confirm="Quit"), answered)

    async def action_quit(self) -> None:
        # Textual's own ctrl+q: it must not skip the question a stress run asks.
        await self.action_request_quit()

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        for mode, title in TABS:
            yield SystemCommand(
                f"Show {title}", f"Switch to the {title} screen", self._switcher(mode)
            )
        yield SystemCommand(
            "Pause or resume refresh",
            "Stop or restart redrawing",
            self.action_toggle_pause,
        )
        yield SystemCommand(
            "Refresh faster", "Shorter refresh interval", self.action_faster
        )
        yield SystemCommand(
            "Refresh slower", "Longer refresh interval", self.action_slower
        )
        yield SystemCommand("Keys", "Every key of every screen", self.action_help)
        if isinstance(screen, PeersScreen):
            yield from self._peer_commands(screen)
        if isinstance(screen, StressScreen):
            yield from self._stress_commands(screen)
        if isinstance(screen, LogScreen):
            yield from self._log_commands(screen)
        yield SystemCommand(
            "Theme", "Change the colour theme", self.action_change_theme
        )
        yield SystemCommand(
            "Quit", "Stop the node gracefully and exit", self.action_request_quit
        )

    def _peer_commands(self, screen: PeersScreen) -> Iterable[SystemCommand]:
        yield SystemCommand(
            "Statement", "Transfers of the selected peer", screen.action_statement
        )
        yield SystemCommand(
            "Filter peers", "Show only matching peers", screen.action_filter
        )
        yield SystemCommand(
            "Clear the filter", "Show every peer", screen.action_clear_filter
        )
        yield SystemCommand(
            "Sort by the next column", "Cycle the sort column", screen.action_next_sort
        )
        yield SystemCommand(
            "Reverse the sort", "Flip the order of the rows", screen.action_reverse_sort
        )
        if self.read_only:
            return
        yield SystemCommand(
            "Grant credits", "Add credits to the selected peer", screen.action_grant
        )
        yield SystemCommand(
            "Deduct credits",
            "Take credits from the selected peer",
            screen.action_deduct,
        )
        yield SystemCommand(
            "Add peer",
            "Register a peer and show its secret once",
            screen.action_add_peer,
        )
        yield SystemCommand(
            "Rotate secret",
            "Issue a new secret to the selected peer",
            screen.action_rotate,
        )
        yield SystemCommand(
            "Disable or enable peer",
            "Refuse or allow the selected peer",
            screen.action_toggle_enabled,
        )

    def _stress_commands(self, screen: StressScreen) -> Iterable[SystemCommand]:
        if self.stress_running:
            yield SystemCommand(
                "Stop the stress run", "Cancel the run going", screen.action_stop
            )
        elif not self.read_only:
            yield SystemCommand(
                "Start a stress run",
                "Run the levels in the form against this node",
                screen.action_start,
            )

    def _log_commands(self, screen: LogScreen) -> Iterable[SystemCommand]:
        yield SystemCommand(
            "Next log level",
            "Raise the lowest level shown: INFO, WARNING, ERROR, DEBUG",
            screen.action_next_level,
        )
        yield SystemCommand(
            "Follow the log", "Scroll to the end and stay there", screen.action_follow
        )

    def _switcher(self, mode: str) -> Callable[[], object]:
        return lambda: self.switch_mode(mode)


def run_console(config: Config, *, read_only: bool) -> int:
    """Run the console with a node built from `config`; returns the exit code."""
    configure_console_logging(config)
    try:
        import uvloop
    except ImportError:
        return asyncio.run(_run(config, read_only=read_only))
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_run(config, read_only=read_only))


async def _run(config: Config, *, read_only: bool) -> int:
    from meld_core.node import Node

    app = MeldConsole(Node(config), read_only=read_only)
    if app.driver_class is LinuxDriver:
        app.driver_class = HangupSafeDriver
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGHUP, signal.SIGTERM):
        loop.add_signal_handler(sig, _on_signal, app, sig)
    try:
        await app.run_async()
    finally:
        for sig in (signal.SIGHUP, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        await app.stop_node()
    return app.return_code or 0


def _on_signal(app: MeldConsole, sig: signal.Signals) -> None:
    log.info("received %s", sig.name)
    app.post_message(MeldConsole.ShutdownRequested(sig.name))
