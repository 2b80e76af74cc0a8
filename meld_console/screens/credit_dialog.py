"""The grant and deduct dialog: amount, reason, and the balance before and after."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from textual import work
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label

from meld_core.errors import MeldError
from meld_core.types import PeerRecord

from .. import format as fmt

log = logging.getLogger(__name__)

MAX_DIGITS = 12
# The dialog's inner width: 64 columns less the border and the padding.
ID_WIDTH = 58
WAITING = "…"


@dataclass(frozen=True, slots=True)
class CreditOrder:
    """A confirmed grant or deduct, not yet applied to the ledger."""

    peer_id: str
    kind: str
    amount: int
    reason: str


class CreditDialog(ModalScreen[CreditOrder | None]):
    """Asks for an amount and a reason; opens on Cancel so Enter changes nothing.

    The peer's balance is read afresh from the ledger as the dialog opens: the
    table's copy may be stale (refresh paused, or a grant from the command line).
    Until it arrives the amounts show `…` and the confirm button stays disabled.
    """

    AUTO_FOCUS = "#cancel"

    BINDINGS = [("escape", "cancel", "Cancel")]

    class PeerRead(Message):
        """The ledger answered with the peer's current record, or why it did not."""

        def __init__(self, peer: PeerRecord | None, problem: str = "") -> None:
            super().__init__()
            self.peer = peer
            self.problem = problem

    def __init__(
        self,
        peer_id: str,
        *,
        kind: str,
        read_peer: Callable[[str], Awaitable[PeerRecord | None]],
    ) -> None:
        """Args:
        read_peer: reads a peer's current record from the ledger; None if unknown.
        """
        if kind not in ("grant", "deduct"):
            raise ValueError(f"not a credit adjustment: {kind}")
        super().__init__()
        self.peer_id = peer_id
        self.kind = kind
        self.peer: PeerRecord | None = None
        """The peer as the ledger has it now; None until it has answered."""
        self._read_peer = read_peer

    def compose(self) -> ComposeResult:
        verb = "Grant credits to" if self.kind == "grant" else "Deduct credits from"
        with Vertical(classes="dialog"):
            yield Label(verb, classes="dialog-title tight")
            yield Label(fmt.middle(self.peer_id, ID_WIDTH), classes="dialog-id")
            yield Label(
                f"balance {WAITING}  held {WAITING}  available {WAITING}", id="before"
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
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self._read()

    @work(group="credit-dialog", exit_on_error=False)
    async def _read(self) -> None:
        try:
            peer = await self._read_peer(self.peer_id)
        except MeldError as exc:
            self.post_message(self.PeerRead(None, exc.message))
            return
        except Exception as exc:
            log.error("cannot read peer %s", self.peer_id, exc_info=exc)
            problem = f"{type(exc).__name__}: {exc} (traceback in the log)"
            self.post_message(self.PeerRead(None, problem))
            return
        problem = "" if peer is not None else f"no peer {self.peer_id}"
        self.post_message(self.PeerRead(peer, problem))

    def on_credit_dialog_peer_read(self, message: PeerRead) -> None:
        self.peer = message.peer
        before = self.query_one("#before", Label)
        if message.peer is None:
            before.update(f"cannot read the balance: {message.problem}")
        else:
            peer = message.peer
            before.update(
                f"balance {fmt.credits(peer.balance)}  held {fmt.credits(peer.held)}"
                f"  available {fmt.credits(peer.available)}"
            )
        self._show_after()

    @property
    def order(self) -> CreditOrder | None:
        """The order the fields describe, or None while they do not make one."""
        text = self.query_one("#amount", Input).value
        reason = self.query_one("#reason", Input).value.strip()
        amount = int(text) if text.isdigit() else 0
        peer = self.peer
        if peer is None or amount <= 0 or not reason:
            return None
        if self.kind == "deduct" and amount > peer.available:
            return None
        return CreditOrder(peer.id, self.kind, amount, reason)

    def on_input_changed(self, event: Input.Changed) -> None:
        self._show_after()

    def _show_after(self) -> None:
        text = self.query_one("#amount", Input).value
        amount = int(text) if text.isdigit() else None
        after = self.query_one("#after", Label)
        peer = self.peer
        if amount is None:
            after.update("balance after: " + fmt.UNKNOWN)
        elif peer is None:
            after.update("balance after: " + WAITING)
        else:
            signed = amount if self.kind == "grant" else -amount
            note = ""
            if self.kind == "deduct" and amount > peer.available:
                note = "  (more than available: refused)"
            after.update(f"balance after: {fmt.credits(peer.balance + signed)}{note}")
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
