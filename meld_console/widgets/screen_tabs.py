"""The line under the header: the screens by number, and the refresh state."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.app import RenderResult
from textual.widget import Widget


class ScreenTabs(Widget):
    """Names the screens with their number keys and marks the one in view."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "screen-tabs--key",
        "screen-tabs--tab",
        "screen-tabs--current",
        "screen-tabs--state",
        "screen-tabs--alert",
    }

    DEFAULT_CSS = """
    ScreenTabs {
        height: 1;
        padding: 0 1;
        background: $boost;
    }
    ScreenTabs > .screen-tabs--key { color: $foreground-muted; }
    ScreenTabs > .screen-tabs--tab { color: $foreground; }
    ScreenTabs > .screen-tabs--current { color: $accent; text-style: bold reverse; }
    ScreenTabs > .screen-tabs--state { color: $foreground-muted; }
    ScreenTabs > .screen-tabs--alert { color: $warning; text-style: bold; }
    """

    def __init__(
        self,
        tabs: Sequence[tuple[str, str]],
        current: str,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        """Args:
        tabs: (mode, title) pairs in number-key order.
        current: the mode of the screen this bar sits on.
        """
        super().__init__(name=name, id=id, classes=classes)
        self._tabs = tuple(tabs)
        self._current = current
        self._state: tuple[bool, float, bool] = (False, 1.0, False)

    def show_state(self, *, paused: bool, interval_s: float, read_only: bool) -> None:
        """Show whether refresh is paused, its interval, and read-only mode."""
        state = (paused, interval_s, read_only)
        if state != self._state:
            self._state = state
            self.refresh()

    def render(self) -> RenderResult:
        flags = self._flags()
        # The flags say what the screen is not doing (refreshing, allowing
        # changes), so they outrank the other tabs' titles when room is short.
        for titled in (True, False):
            text = self._tabs_text(all_titled=titled)
            room = self.size.width - text.cell_len - flags.cell_len
            if room >= 0:
                break
        text.append(" " * max(1, room))
        text.append_text(flags)
        return text

    def _tabs_text(self, *, all_titled: bool) -> Text:
        style = self.get_component_rich_style
        text = Text(no_wrap=True, overflow="crop")
        for number, (mode, title) in enumerate(self._tabs, start=1):
            current = mode == self._current
            text.append(f"{number}", style("screen-tabs--key"))
            if current or all_titled:
                tab_style = "screen-tabs--current" if current else "screen-tabs--tab"
                text.append(f" {title} ", style(tab_style))
            text.append(" ")
        return text

    def _flags(self) -> Text:
        style = self.get_component_rich_style
        paused, interval_s, read_only = self._state
        flags = Text()
        if read_only:
            flags.append("read-only ", style("screen-tabs--alert"))
        if paused:
            flags.append("paused", style("screen-tabs--alert"))
        else:
            flags.append(f"every {interval_s:g}s", style("screen-tabs--state"))
        return flags
