"""The dialog that registers a new peer: its id and its opening credits."""

from __future__ import annotations

from dataclasses import dataclass

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Input, Label

from meld_core.signing import is_valid_id


@dataclass(frozen=True, slots=True)
class NewPeer:
    """A peer to register, as the operator typed it."""

    peer_id: str
    credits: int


class NewPeerDialog(ModalScreen[NewPeer | None]):
    """Asks for a peer id and opening credits; opens on the id.

    Add stays disabled until the id is valid and new, so a habitual Enter cannot
    add a peer.
    """

    AUTO_FOCUS = "#peer-id"

    BINDINGS = [("escape", "cancel", "Cancel")]

    def __init__(self, *, taken: frozenset[str] = frozenset()) -> None:
        super().__init__()
        self.taken = taken

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label("Add a peer", classes="dialog-title")
            yield Input(placeholder="peer id, such as agent-7", id="peer-id")
            yield Input(
                placeholder="opening credits (0)",
                restrict=r"[0-9]*",
                max_length=12,
                id="credits",
            )
            yield Label("", id="problem", classes="dialog-problem")
            with Horizontal(classes="dialog-buttons"):
                yield Button("Cancel", id="cancel")
                yield Button("Add", id="confirm", variant="primary", disabled=True)
        yield Footer(compact=True)

    @property
    def new_peer(self) -> NewPeer | None:
        """The peer the fields describe, or None while they do not make one."""
        peer_id = self.query_one("#peer-id", Input).value.strip()
        text = self.query_one("#credits", Input).value
        if not is_valid_id(peer_id) or peer_id in self.taken:
            return None
        return NewPeer(peer_id, int(text) if text.isdigit() else 0)

    def on_input_changed(self, event: Input.Changed) -> None:
        peer_id = self.query_one("#peer-id", Input).value.strip()
        problem = ""
        if peer_id and not is_valid_id(peer_id):
            problem = "ids are lower case: [a-z0-9][a-z0-9._-]{0,62}"
        elif peer_id in self.taken:
            problem = f"{peer_id} already exists"
        self.query_one("#problem", Label).update(problem)
        self.query_one("#confirm", Button).disabled = self.new_peer is None

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "peer-id":
            self.query_one("#credits", Input).focus()
        elif self.new_peer is not None:
            self.query_one("#confirm", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.dismiss(self.new_peer if event.button.id == "confirm" else None)

    def action_cancel(self) -> None:
        self.dismiss(None)
