"""Shows a new peer secret, once; nothing keeps it after the dialog closes."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Footer, Label, Static

from .. import format as fmt

# The dialog's inner width: 64 columns less the border and the padding.
ID_WIDTH = 58


class SecretDialog(ModalScreen[None]):
    """The only place a secret ever appears on screen; only `y` closes it.

    Nothing has the focus and neither Enter nor Escape closes it: an Enter or an
    Escape typed ahead, meant for the screen before, would lose the secret.
    """

    AUTO_FOCUS = ""

    BINDINGS = [
        Binding("y", "done", "I have copied it"),
        Binding("c", "copy", "Copy (OSC 52)"),
        Binding("escape", "remind", "Close: press y", show=False),
    ]

    def __init__(self, peer_id: str, secret: str, *, what: str = "new") -> None:
        super().__init__()
        self._peer_id = peer_id
        self._secret = secret
        self._what = what

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog"):
            yield Label(f"The {self._what} secret of", classes="dialog-title tight")
            yield Label(fmt.middle(self._peer_id, ID_WIDTH), classes="dialog-id")
            yield Static(self._secret, id="secret")
            yield Label(
                "Copy it now: it is shown this once and never again. "
                "c copies it through the terminal; y closes.",
                classes="dialog-text",
            )
            with Horizontal(classes="dialog-buttons"):
                yield Button("I have copied it (y)", id="done", variant="primary")
        yield Footer(compact=True)

    def on_button_pressed(self, event: Button.Pressed) -> None:
        self.action_done()

    def action_copy(self) -> None:
        self.app.copy_to_clipboard(self._secret)
        # The terminal keeps its copy; the app's paste buffer must not keep one.
        self.app._clipboard = ""
        self.notify("Secret sent to the terminal's clipboard.")

    def action_remind(self) -> None:
        self.notify("The secret is shown only once: press y when it is copied.")

    def action_done(self) -> None:
        self._secret = ""
        self.dismiss(None)
