"""Peers with their money, traffic and limits; sortable, filterable, cursor-stable."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from rich.text import Text
from textual.widgets import DataTable

from meld_core.types import PeerRecord

from .. import format as fmt


@dataclass(frozen=True, slots=True)
class _Column:
    label: str
    width: int
    key: Callable[[PeerRecord], Any]


MAX_ID_WIDTH = 40
COLUMNS = (
    _Column("peer", 12, lambda p: p.id),
    _Column("balance", 10, lambda p: p.balance),
    _Column("held", 6, lambda p: p.held),
    _Column("available", 10, lambda p: p.available),
    _Column("req/1h", 6, lambda p: p.requests_1h),
    _Column("seen", 6, lambda p: p.last_seen or 0.0),
    _Column("limits", 7, lambda p: (p.requests_per_minute or 0, p.max_in_flight or 0)),
    _Column("state", 5, lambda p: p.enabled),
)


class PeerTable(DataTable[Text]):
    """Renders peer records; the cursor follows its peer through sorts and refreshes."""

    COMPONENT_CLASSES: ClassVar[set[str]] = DataTable.COMPONENT_CLASSES | {
        "peer-table--off",
        "peer-table--low",
    }

    DEFAULT_CSS = """
    PeerTable > .peer-table--off { color: $error; }
    PeerTable > .peer-table--low { color: $warning; }
    """

    def __init__(
        self,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes, cursor_type="row")
        self._peers: tuple[PeerRecord, ...] = ()
        self._now = 0.0
        self._filter = ""
        self._sort_index = 0
        self._reverse = False
        self._shown: tuple[Any, ...] | None = None
        self._header: tuple[tuple[str, ...], tuple[int, ...]] = ((), ())

    @property
    def sort_label(self) -> str:
        """The column the rows are sorted by, with the order's arrow."""
        return self._label(self._sort_index)

    @property
    def filter_text(self) -> str:
        """The text peer ids must contain to be shown; empty shows all."""
        return self._filter

    @property
    def peers(self) -> tuple[PeerRecord, ...]:
        """Every peer last shown, the filter notwithstanding."""
        return self._peers

    @property
    def visible_peers(self) -> tuple[PeerRecord, ...]:
        """The peers in the order shown, after the filter."""
        needle = self._filter.lower()
        chosen = [p for p in self._peers if needle in p.id.lower()]
        column = COLUMNS[self._sort_index]
        # Sort by id first so that ties keep a stable, readable order.
        chosen.sort(key=lambda p: p.id)
        chosen.sort(key=column.key, reverse=self._reverse)
        return tuple(chosen)

    @property
    def selected_peer(self) -> PeerRecord | None:
        """The peer under the cursor, if any row is shown."""
        if not self.row_count:
            return None
        key = self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value
        return next((p for p in self._peers if p.id == key), None)

    def show(self, peers: Sequence[PeerRecord], *, now: float) -> None:
        """Render peer records as of `now`."""
        self._peers = tuple(peers)
        self._now = now
        self._redraw()

    def set_filter(self, text: str) -> None:
        """Show only peers whose id contains `text`, ignoring case."""
        self._filter = text
        self._redraw()

    def sort_by(self, index: int, *, reverse: bool | None = None) -> None:
        """Sort by the column at `index`; the same column again flips the order."""
        if reverse is None:
            reverse = not self._reverse if index == self._sort_index else False
        self._sort_index = index % len(COLUMNS)
        self._reverse = reverse
        self._redraw()

    def cycle_sort(self) -> None:
        """Sort by the next column."""
        self.sort_by((self._sort_index + 1) % len(COLUMNS), reverse=False)

    def reverse_sort(self) -> None:
        """Flip the order of the current sort."""
        self.sort_by(self._sort_index, reverse=not self._reverse)

    def on_data_table_header_selected(self, event: DataTable.HeaderSelected) -> None:
        event.stop()
        self.sort_by(event.column_index)

    def _redraw(self) -> None:
        if not self.is_mounted:
            return
        labels = tuple(self._label(i) for i in range(len(COLUMNS)))
        # The sorted column widens to keep its arrow: a cut arrow hides the order.
        others = tuple(
            max(c.width, len(label))
            for c, label in zip(COLUMNS[1:], labels[1:], strict=True)
        )
        widths = (self._id_width(sum(others)), *others)
        header = (labels, widths)
        peers = self.visible_peers
        rows = tuple((p.id, self._cells(p)) for p in peers)
        if header == self._header and self._same_peers(rows):
            self._update_cells(rows)
            return
        selected = self.selected_peer
        self.clear(columns=header != self._header)
        if header != self._header:
            for label, column, width in zip(labels, COLUMNS, widths, strict=True):
                self.add_column(label, width=width, key=column.label)
            self._header = header
        for peer_id, cells in rows:
            self.add_row(*cells, key=peer_id)
        self._shown = rows
        self._restore_cursor(selected)

    def _same_peers(self, rows: tuple[tuple[str, tuple[Text, ...]], ...]) -> bool:
        shown = self._shown
        return shown is not None and [k for k, _ in rows] == [k for k, _ in shown]

    def _update_cells(self, rows: tuple[tuple[str, tuple[Text, ...]], ...]) -> None:
        # Same peers in the same order: `seen` ticks every second, so rewriting
        # the changed cells spares rebuilding every row on every refresh.
        assert self._shown is not None
        for (peer_id, cells), (_, was) in zip(rows, self._shown, strict=True):
            for column, new, old in zip(COLUMNS, cells, was, strict=True):
                if new != old or new.style != old.style:
                    self.update_cell(peer_id, column.label, new)
        self._shown = rows

    def on_resize(self) -> None:
        self._redraw()

    def _id_width(self, others: int) -> int:
        """The peer column takes the width the other columns leave, within reason."""
        padding = 2 * self.cell_padding * len(COLUMNS) + 1
        spare = self.size.width - others - padding
        return max(COLUMNS[0].width, min(MAX_ID_WIDTH, spare))

    def _restore_cursor(self, selected: PeerRecord | None) -> None:
        if not self.row_count:
            return
        row = 0
        if selected is not None and selected.id in self.rows:
            row = self.get_row_index(selected.id)
        self.move_cursor(row=row, animate=False)

    def _label(self, index: int) -> str:
        label = COLUMNS[index].label
        if index != self._sort_index:
            return label
        return f"{label} {'▼' if self._reverse else '▲'}"

    def _cells(self, peer: PeerRecord) -> tuple[Text, ...]:
        style = self.get_component_rich_style
        rpm = peer.requests_per_minute
        in_flight = peer.max_in_flight
        limits = f"{rpm if rpm is not None else fmt.UNKNOWN}/{in_flight or fmt.UNKNOWN}"
        state = (
            Text("on") if peer.enabled else Text("off", style=style("peer-table--off"))
        )
        available_style = style("peer-table--low") if peer.available <= 0 else ""
        seen = fmt.seen(peer.last_seen, self._now)
        return (
            Text(peer.id, overflow="ellipsis", no_wrap=True),
            Text(fmt.credits(peer.balance), justify="right"),
            Text(fmt.credits(peer.held), justify="right"),
            Text(fmt.credits(peer.available), justify="right", style=available_style),
            Text(str(peer.requests_1h), justify="right"),
            Text(seen, justify="right"),
            Text(limits, justify="right"),
            state,
        )
