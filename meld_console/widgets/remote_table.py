"""Other nodes this node knows of, one row per remote and model."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from rich.text import Text
from textual.widgets import DataTable

from meld_core.types import RemoteSnapshot

from .. import format as fmt

COLUMNS = (
    ("remote", 12),
    ("health", 7),
    ("p50", 7),
    ("model", 16),
    ("eta", 6),
    ("queued", 6),
    ("last seen", 11),
)


class RemoteTable(DataTable[Text]):
    """Health, latency, ETA per model and last contact of each remote node."""

    COMPONENT_CLASSES: ClassVar[set[str]] = DataTable.COMPONENT_CLASSES | {
        "remote-table--up",
        "remote-table--down",
        "remote-table--muted",
    }

    DEFAULT_CSS = """
    RemoteTable > .remote-table--up { color: $success; }
    RemoteTable > .remote-table--down { color: $error; text-style: bold; }
    RemoteTable > .remote-table--muted { color: $foreground-muted; }
    """

    def __init__(
        self,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes, cursor_type="row")
        self._shown: tuple[tuple[Text, ...], ...] | None = None

    def on_mount(self) -> None:
        for label, width in COLUMNS:
            self.add_column(label, width=width, key=label)

    def show(self, remotes: Sequence[RemoteSnapshot], *, now: float) -> None:
        """Render the remotes as of `now`; rebuild only when a cell changed."""
        rows = tuple(row for remote in remotes for row in self._rows(remote, now))
        if rows == self._shown:
            return
        self._shown = rows
        row = self.cursor_row
        self.clear()
        self.add_rows(rows)
        if rows:
            self.move_cursor(row=min(row, len(rows) - 1), animate=False)

    def _rows(self, remote: RemoteSnapshot, now: float) -> list[tuple[Text, ...]]:
        style = self.get_component_rich_style
        if remote.healthy:
            health = Text("up", style=style("remote-table--up"))
        else:
            health = Text("down", style=style("remote-table--down"))
        head = (
            Text(remote.id, overflow="ellipsis", no_wrap=True),
            health,
            Text(fmt.millis(remote.p50_ms), justify="right"),
        )
        seen = Text(fmt.ago(remote.last_seen, now))
        if not remote.models:
            why = remote.error or "no models"
            muted = style("remote-table--muted")
            return [
                (
                    *head,
                    Text(why, style=muted, overflow="ellipsis"),
                    Text(""),
                    Text(""),
                    seen,
                )
            ]
        return [(*head, *self._model_cells(model), seen) for model in remote.models]

    def _model_cells(self, model: dict[str, Any]) -> tuple[Text, Text, Text]:
        eta = model.get("eta_s")
        queued = model.get("queued")
        return (
            Text(str(model.get("id", "?")), overflow="ellipsis", no_wrap=True),
            Text(
                fmt.seconds(float(eta)) if eta is not None else fmt.UNKNOWN,
                justify="right",
            ),
            Text(str(queued) if queued is not None else fmt.UNKNOWN, justify="right"),
        )
