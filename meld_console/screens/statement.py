"""A peer's statement: its latest transfers, newest first."""

from __future__ import annotations

from collections.abc import Sequence

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Footer, Label

from meld_core.types import Transfer

from .. import format as fmt

SHOWN = 50
"""Rows a statement shows; the screen is given more, to find grants and deducts."""
ADJUSTMENTS = frozenset({"grant", "deduct"})


class StatementScreen(ModalScreen[None]):
    """Time, kind, signed amount, reason and actor of each of a peer's transfers.

    A busy peer's latest transfers are all holds, settles and releases; `f` keeps
    only the grants and deducts an operator made.
    """

    BINDINGS = [
        Binding("f", "toggle_adjustments", "Grants/deducts only"),
        Binding("escape,q", "close", "Close"),
    ]

    def __init__(
        self, peer_id: str, transfers: Sequence[Transfer], *, now: float
    ) -> None:
        """Args:
        transfers: the peer's latest transfers, any number; the newest 50 shown.
        """
        super().__init__()
        self.peer_id = peer_id
        self.transfers = tuple(sorted(transfers, key=lambda t: t.id, reverse=True))
        self.now = now
        self.adjustments_only = False
        """Whether only grants and deducts are shown."""

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label("", id="statement-title", classes="dialog-title")
            yield DataTable(id="statement", cursor_type="row")
        yield Footer(compact=True)

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        table.add_column("time", width=11)
        table.add_column("kind", width=7)
        table.add_column("amount", width=9)
        table.add_column("reason", width=25)
        table.add_column("actor", width=12)
        self._fill()
        table.focus()

    def action_toggle_adjustments(self) -> None:
        self.adjustments_only = not self.adjustments_only
        self._fill()

    def _fill(self) -> None:
        chosen = [
            t
            for t in self.transfers
            if not self.adjustments_only or t.kind in ADJUSTMENTS
        ][:SHOWN]
        table = self.query_one(DataTable)
        table.clear()
        for transfer in chosen:
            table.add_row(*self._cells(transfer))
        what = "grants and deducts" if self.adjustments_only else "transfers"
        title = f"Statement of {self.peer_id}: last {len(chosen)} {what}"
        self.query_one("#statement-title", Label).update(title)

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
