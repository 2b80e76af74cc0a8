"""A peer's statement: its latest transfers, newest first."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Label

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
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("time", width=11)
        table.add_column("kind", width=7)
        table.add_column("amount", width=9)
        table.add_column("reason", width=22)
        table.add_column("actor", width=14)
        for transfer in sorted(self.transfers, key=lambda t: t.id, reverse=True):
            table.add_row(*self._cells(transfer))
        table.focus()

    def _cells(self, transfer: Transfer) -> tuple[Text, ...]:
        return (
            Text(fmt.stamp(transfer.at, self.now)),
            Text(transfer.kind),
            Text(self._amount(transfer), justify="right"),
            Text(transfer.reason, overflow="ellipsis", no_wrap=True),
            Text(transfer.actor, overflow="ellipsis", no_wrap=True),
        )

    def _amount(self, transfer: Transfer) -> str:
        """The amount, signed by its effect on the balance; holds and releases
        move credits between the peer's own accounts and carry no sign."""
        own = {self.peer_id, f"peer:{self.peer_id}", f"held:{self.peer_id}"}
        into, out_of = transfer.dest in own, transfer.source in own
        sign = "+" if into and not out_of else "-" if out_of and not into else ""
        return f"{sign}{fmt.credits(transfer.amount)}"

    def action_close(self) -> None:
        self.dismiss(None)
