"""The frame every console screen shares: header, screen tabs, body and footer."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar, cast

from textual.app import ComposeResult
from textual.screen import Screen
from textual.widgets import Footer

from meld_core.types import NodeSnapshot

from ..widgets import NodeHeader, ScreenTabs

if TYPE_CHECKING:
    from ..app import MeldConsole

TABS = (
    ("dashboard", "Dashboard"),
    ("peers", "Peers"),
    ("network", "Network"),
    ("stress", "Stress"),
    ("log", "Log"),
)


class LiveScreen(Screen[None]):
    """A screen that renders node snapshots while, and only while, it is in view."""

    MODE: ClassVar[str] = ""
    FOOTER_PALETTE: ClassVar[bool] = True
    """Whether the footer shows the command palette's key."""

    @property
    def console(self) -> MeldConsole:
        """The console app, typed."""
        return cast("MeldConsole", self.app)

    def compose(self) -> ComposeResult:
        yield NodeHeader()
        yield ScreenTabs(TABS, self.MODE)
        yield from self.compose_body()
        yield Footer(compact=True, show_command_palette=self.FOOTER_PALETTE)

    def compose_body(self) -> ComposeResult:
        """The widgets between the tabs and the footer."""
        yield from ()

    def on_screen_resume(self) -> None:
        # A screen coming back into view shows the latest state at once, not at
        # the next tick, because it skipped every tick while it was hidden.
        self.show_state()
        snapshot = self.console.snapshot
        if snapshot is not None:
            self.tick(snapshot)

    def show_state(self) -> None:
        """Show pause, interval and read-only state in the tab bar."""
        console = self.console
        self.query_one(ScreenTabs).show_state(
            paused=console.paused,
            interval_s=console.interval_s,
            read_only=console.read_only,
        )

    def show_message(self, message: str) -> None:
        """Put a status message in place of the header line."""
        self.query_one(NodeHeader).show_message(message)

    def tick(self, snapshot: NodeSnapshot) -> None:
        """Render a fresh snapshot; called once per refresh while the screen is seen."""
        if not self.console.stopping:
            self.query_one(NodeHeader).show(snapshot)
        self.show_snapshot(snapshot)

    def show_snapshot(self, snapshot: NodeSnapshot) -> None:
        """Render the body from a snapshot; screens override this."""
