"""The default screen: every backend's load and history, and the latest requests."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Label

from meld_core.types import NodeSnapshot

from ..widgets import BackendCard, RequestTable
from .base import LiveScreen


class DashboardScreen(LiveScreen):
    """Backends with slots, queue, latency and sparklines; then the latest requests."""

    MODE = "dashboard"

    def compose_body(self) -> ComposeResult:
        yield VerticalScroll(id="backends")
        yield Label("Latest requests", classes="section-title")
        yield RequestTable(id="requests")

    def show_snapshot(self, snapshot: NodeSnapshot) -> None:
        self._show_backends(snapshot)
        self.query_one(RequestTable).show(snapshot.recent)

    def _show_backends(self, snapshot: NodeSnapshot) -> None:
        box = self.query_one("#backends", VerticalScroll)
        cards = list(box.query(BackendCard))
        names = [card.backend.name for card in cards]
        if names == [b.name for b in snapshot.backends]:
            for card, backend in zip(cards, snapshot.backends, strict=True):
                card.show(backend)
            return
        # The set of backends is fixed by the configuration, so this runs once.
        box.remove_children()
        box.mount_all(BackendCard(b) for b in snapshot.backends)
