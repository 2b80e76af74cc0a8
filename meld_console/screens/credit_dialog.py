"""The grant and deduct dialog: amount, reason, and the balance before and after."""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label

from meld_core.types import PeerRecord

from .. import format as fmt

MAX_DIGITS = 12


@dataclass(frozen=True, slots=True)
class CreditOrder:
    """A confirmed grant or deduct, not yet applied to the ledger."""

    peer_id: str
    kind: str
    amount: int
    reason: str


class CreditDialog(ModalScreen[CreditOrder | None]):
    """Asks for an amount and a reason; opens on Cancel so Enter changes nothing."""

    AUTO_FOCUS = "#cancel"

    BINDINGS = [("escape", "cancel", "Cancel")]

    def __init__(self, peer: PeerRecord, *, kind: str) -> None:
        if kind not in ("grant", "deduct"):
            raise ValueError(f"not a credit adjustment: {kind}")
        super().__init__()
        self.peer = peer
        self.kind = kind

    def compose(self) -> ComposeResult:
        peer = self.peer
        verb = "Grant credits to" if self.kind == "grant" else "Deduct credits from"
        with Vertical(classes="dialog"):
            yield Label(f"{verb} {peer.id}", classes="dialog-title")
            yield Label(
                f"balance {fmt.credits(peer.balance)}  held {fmt.credits(peer.held)}"
                f"  available {fmt.credits(peer.available)}",
                id="before",
            )
            yield Input(
                placeholder="amount, in credit units",
                restrict=r"[0-9]*",
                max_length=MAX_DIGITS,
                id="amount",
            )
            yield Input(placeholder="reason (kept in the ledger)", id="reason")
            yield Label("balance after: " + fmt.UNKNOWN, id="after")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                label = "Grant" if self.kind == "grant" else "Deduct"
                yield Button(
                    label,
                    id="confirm",
                    variant="primary" if self.kind == "grant" else "error",
                    disabled=True,
                )

    @property
    def order(self) -> CreditOrder | None:
        """The order the fields describe, or None while they do not make one."""
        text = self.query_one("#amount", Input).value
        reason = self.query_one("#reason", Input).value.strip()
        amount = int(text) if text.isdigit() else 0
        if amount <= 0 or not reason:
            return None
        if self.kind == "deduct" and amount > self.peer.available:
            return None
        return CreditOrder(self.peer.id, self.kind, amount, reason)

    def on_input_changed(self, event: Input.Changed) -> None:
        text = self.query_one("#amount", Input).value
        amount = int(text) if text.isdigit() else None
        after = self.query_one("#after", Label)
        if amount is None:
            after.update("balance after: " + fmt.UNKNOWN)
        else:
            signed = amount if self.kind == "grant" else -amount
            note = ""
            if self.kind == "deduct" and amount > self.peer.available:
                note = "  (more than available: refused)"
            after.update(
                f"balance after: {fmt.credits(self.peer.balance + signed)}{note}"
            )
        self.query_one("#confirm", Button).disabled = self.order is None

    def on_input_submitted(self, event: Input.Submitted) -> None:
        # Enter walks forward through the form but never confirms by itself.
        if event.input.id == "amount":
            self.query_one("#reason", Input).focus()
        elif self.order is not None:
            self.query_one("#confirm", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "confirm":
            self.dismiss(self.order)
        else:
            self.dismiss(None)

    def action_cancel(self) -> None:
        self.dismiss(None)
