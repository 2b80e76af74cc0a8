"""Every key of every screen, in one list."""

from __future__ import annotations

from collections.abc import Sequence

from rich.table import Table
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Label, Static

Section = tuple[str, Sequence[tuple[str, str]]]


class HelpScreen(ModalScreen[None]):
    """Lists the keys it is given, section by section."""

    BINDINGS = [
        ("escape", "close", "Close"),
        ("question_mark", "close", "Close"),
        ("f1", "close", "Close"),
        ("q", "close", "Close"),
    ]

    def __init__(self, sections: Sequence[Section]) -> None:
        """Args:
        sections: (title, [(key, what it does), ...]) in display order.
        """
        super().__init__()
        self.sections = tuple(sections)

    def compose(self) -> ComposeResult:
        with Vertical(classes="dialog wide"):
            yield Label("Keys  (Esc closes)", classes="dialog-title")
            with VerticalScroll(id="help-body"):
                for title, keys in self.sections:
                    yield Label(title, classes="help-section")
                    yield Static(self._table(keys))

    def _table(self, keys: Sequence[tuple[str, str]]) -> Table:
        table = Table.grid(padding=(0, 2))
        table.add_column(width=10, no_wrap=True)
        table.add_column()
        for key, what in keys:
            table.add_row(key, what)
        return table

    def action_close(self) -> None:
        self.dismiss(None)
