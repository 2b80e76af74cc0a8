"""A peer's statement: its latest transfers, newest first."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label

from meld_core.types import Transfer

from .. import format as fmt


class StatementScreen(ModalScreen[None]):
    """Time, kind, signed amount, reason and actor of each of a peer's transfers."""

    BINDINGS = [("escape", "close", "Close"), ("q", "close", "Close")]

    def __init__(
        self, peer_id: str, transfers: Sequence[Transfer], *, now: float
    ) -> None:
        super().__init__()
        self.peer_id = peer_id
        self.transfers = tuple(transfers)
        self.now = now

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label(
                f"Statement of {self.peer_id}: last {len(self.transfers)} transfers",
                classes="dialog-title",
            )
            yield DataTable(id="statement", cursor_type="row")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("time", width=11)
        table.add_column("kind", width=7)
        table.add_column("amount", width=9)
        table.add_column("reason", width=22)
        table.add_column("actor", width=14)
        for transfer in sorted(self.transfers, key=lambda t: t.at, reverse=True):
            table.add_row(*self._cells(transfer))
        table.focus()

    def _cells(self, transfer: Transfer) -> tuple[Text, ...]:
        # Money leaving the peer's account reads as negative.
        sign = "-" if transfer.source == self.peer_id else "+"
        return (
            Text(fmt.stamp(transfer.at, self.now)),
            Text(transfer.kind),
            Text(f"{sign}{fmt.credits(transfer.amount)}", justify="right"),
            Text(transfer.reason, overflow="ellipsis", no_wrap=True),
            Text(transfer.actor, overflow="ellipsis", no_wrap=True),
        )

    def action_close(self) -> None:
        self.dismiss(None)
