"""The latest requests the node answered, newest first."""

from __future__ import annotations

from collections.abc import Sequence
from typing import ClassVar

from rich.text import Text
from textual.widgets import DataTable

from meld_core.types import RequestRecord

from .. import format as fmt

COLUMNS = (
    ("time", 8),
    ("peer", 12),
    ("model", 11),
    ("status", 10),
    ("queued", 7),
    ("latency", 7),
    ("credits", 7),
)


class RequestTable(DataTable[Text]):
    """Time, peer, model, status, queued ms, latency and credits of each request."""

    COMPONENT_CLASSES: ClassVar[set[str]] = DataTable.COMPONENT_CLASSES | {
        "request-table--ok",
        "request-table--refused",
        "request-table--failed",
    }

    DEFAULT_CSS = """
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
        super().__init__(
            name=name, id=id, classes=classes, cursor_type="row", zebra_stripes=False
        )
        self._limit = limit
        self._shown: tuple[RequestRecord, ...] = ()
        self._widths_shown: tuple[int, ...] = ()

    def on_resize(self) -> None:
        self.show(self._shown)

    def _widths(self) -> tuple[int, ...]:
        """Column widths: peer, model and status share what the table has spare."""
        widths = [width for _, width in COLUMNS]
        padding = 2 * self.cell_padding * len(COLUMNS) + 1
        spare = max(0, self.size.width - sum(widths) - padding)
        widths[1] += min(18, spare // 2)
        widths[2] += min(12, spare // 4)
        widths[3] += min(12, spare // 4)
        return tuple(widths)

    def show(self, records: Sequence[RequestRecord]) -> None:
        """Show the newest `limit` records; rebuild only when they changed."""
        newest = tuple(sorted(records, key=lambda r: r.at, reverse=True)[: self._limit])
        widths = self._widths()
        if newest == self._shown and widths == self._widths_shown:
            return
        self._shown = newest
        row = self.cursor_row
        self.clear(columns=widths != self._widths_shown)
        if widths != self._widths_shown:
            for (label, _), width in zip(COLUMNS, widths, strict=True):
                self.add_column(label, width=width, key=label)
            self._widths_shown = widths
        self.add_rows(self._cells(record) for record in newest)
        if newest:
            self.move_cursor(row=min(row, len(newest) - 1), animate=False)

    def _cells(self, record: RequestRecord) -> list[Text]:
        status = str(record.status)
        if record.error_type:
            status = f"{status} {record.error_type}"
        if record.status < 400:
            kind = "ok"
        elif record.status in (402, 429):
            kind = "refused"
        else:
            kind = "failed"
        status_style = self.get_component_rich_style(f"request-table--{kind}")
        return [
            Text(fmt.clock_time(record.at)),
            Text(record.peer, overflow="ellipsis", no_wrap=True),
            Text(record.model, overflow="ellipsis", no_wrap=True),
            Text(status, style=status_style, overflow="ellipsis", no_wrap=True),
            Text(fmt.millis(record.queued_ms), justify="right"),
            Text(fmt.millis(record.latency_ms), justify="right"),
            Text(fmt.credits(record.credits), justify="right"),
        ]
