"""Shows a new peer secret, once; nothing keeps it after the dialog closes."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static


class SecretDialog(ModalScreen[None]):
    """The only place a secret ever appears on screen."""

    AUTO_FOCUS = "#done"

    BINDINGS = [("escape", "done", "Close")]

    def __init__(self, peer_id: str, secret: str, *, what: str = "new") -> None:
        super().__init__()
        self._peer_id = peer_id
        self._secret = secret
        self._what = what

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(
                f"The {self._what} secret of {self._peer_id}", classes="dialog-title"
            )
            yield Static(self._secret, id="secret")
            yield Label(
                "Copy it now: it is shown this once and never again.",
                classes="dialog-text",
            )
            with Horizontal(classes="dialog-buttons"):
                yield Button("Done", id="done", variant="primary")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_done()

    def action_done(self) -> None:
        self._secret = ""
        self.dismiss(None)
