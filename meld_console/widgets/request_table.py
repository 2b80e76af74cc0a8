"""The latest requests the node answered, newest first, as plain pre-rendered lines.

A DataTable rebuilt every second cost a loaded node a fifth of its event loop, so
this widget renders each row once per change, straight to strips.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.strip import Strip
from textual.widget import Widget

from meld_core.types import RequestRecord

from .. import format as fmt

# (title, width, flexible share of spare width, right-aligned)
COLUMNS = (
    ("time", 8, 0, False),
    ("peer", 12, 2, False),
    ("model", 11, 1, False),
    ("status", 10, 1, False),
    ("queued", 7, 0, True),
    ("latency", 7, 0, True),
    ("credits", 7, 0, True),
)
MAX_EXTRA = (0, 18, 12, 12, 0, 0, 0)
GAP = 2


class RequestTable(Widget):
    """Time, peer, model, status, queued ms, latency and credits of each request."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "request-table--header",
        "request-table--ok",
        "request-table--refused",
        "request-table--failed",
    }

    DEFAULT_CSS = """
    RequestTable {
        height: 1fr;
        padding: 0 1;
    }
    RequestTable > .request-table--header {
        text-style: bold;
        color: $foreground-muted;
    }
    RequestTable > .request-table--ok { color: $success; }
    RequestTable > .request-table--refused { color: $warning; }
    RequestTable > .request-table--failed { color: $error; text-style: bold; }
    """

    def __init__(
        self,
        *,
        limit: int = 50,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._limit = limit
        self._shown: tuple[RequestRecord, ...] = ()
        self._strips: list[Strip] | None = None
        self._built_width = -1

    @property
    def records(self) -> tuple[RequestRecord, ...]:
        """The records on screen, newest first."""
        return self._shown

    def show(self, records: Sequence[RequestRecord]) -> None:
        """Show the newest `limit` records; redraw only when they changed."""
        newest = tuple(sorted(records, key=lambda r: r.at, reverse=True)[: self._limit])
        if newest == self._shown:
            return
        self._shown = newest
        self._strips = None
        self.refresh()

    def render_line(self, y: int) -> Strip:
        width = self.size.width
        if self._strips is None or self._built_width != width:
            self._strips = self._build(width)
            self._built_width = width
        if y < len(self._strips):
            return self._strips[y]
        return Strip.blank(width, self.rich_style)

    def _build(self, width: int) -> list[Strip]:
        widths = self._widths(width)
        header = self.get_component_rich_style("request-table--header")
        rows = [self._line([(c[0], header) for c in COLUMNS], widths)]
        for record in self._shown[: max(0, self.size.height - 1)]:
            rows.append(self._line(self._cells(record), widths))
        console = self.app.console
        base = self.rich_style
        strips = []
        for text in rows:
            strip = Strip(text.render(console), text.cell_len)
            strips.append(strip.crop_extend(0, width, base).apply_style(base))
        return strips

    def _widths(self, width: int) -> list[int]:
        widths = [column[1] for column in COLUMNS]
        spare = max(0, width - sum(widths) - GAP * (len(COLUMNS) - 1))
        shares = sum(column[2] for column in COLUMNS)
        for index, column in enumerate(COLUMNS):
            if column[2]:
                widths[index] += min(MAX_EXTRA[index], spare * column[2] // shares)
        return widths

    def _line(
        self, cells: Sequence[tuple[str, Style | str]], widths: list[int]
    ) -> Text:
        line = Text(no_wrap=True, overflow="crop")
        for index, ((value, style), width) in enumerate(
            zip(cells, widths, strict=True)
        ):
            if len(value) > width:
                value = value[: width - 1] + "…"
            padded = value.rjust(width) if COLUMNS[index][3] else value.ljust(width)
            line.append(padded, style)
            if index < len(widths) - 1:
                line.append(" " * GAP)
        return line

    def _cells(self, record: RequestRecord) -> list[tuple[str, Style | str]]:
        status = str(record.status)
        if record.error_type:
            status = f"{status} {record.error_type}"
        if record.status < 400:
            kind = "ok"
        elif record.status in (402, 429):
            kind = "refused"
        else:
            kind = "failed"
        return [
            (fmt.clock_time(record.at), ""),
            (record.peer, ""),
            (record.model, ""),
            (status, self.get_component_rich_style(f"request-table--{kind}")),
            (fmt.millis(record.queued_ms), ""),
            (fmt.millis(record.latency_ms), ""),
            (fmt.credits(record.credits), ""),
        ]

    def on_resize(self) -> None:
        self._strips = None
