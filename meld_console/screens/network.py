"""Other nodes: their health, latency, and ETA per model, from their `/v1/network`."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Label

from meld_core.types import NodeSnapshot

from ..widgets import RemoteTable
from .base import LiveScreen

NO_REMOTES = (
    "No remotes configured. Add a [[remotes]] table to the configuration "
    "to watch another node here."
)


class NetworkScreen(LiveScreen):
    """Remotes with health, p50, and ETA and queue per model."""

    MODE = "network"

    def compose_body(self) -> ComposeResult:
        yield Label("Remotes", classes="section-title")
        yield Label(NO_REMOTES, id="no-remotes", classes="hint")
        yield RemoteTable(id="remotes")

    def show_snapshot(self, snapshot: NodeSnapshot) -> None:
        empty = not snapshot.remotes
        self.query_one("#no-remotes").display = empty
        table = self.query_one(RemoteTable)
        table.display = not empty
        table.show(snapshot.remotes, now=self.console.clock())
