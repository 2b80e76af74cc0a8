"""The peer table: sorting by any column, filtering, and a cursor that stays put."""

from __future__ import annotations

import dataclasses

from textual.app import App, ComposeResult

from meld_console.widgets import PeerTable
from meld_console.widgets.peer_table import COLUMNS
from meld_core.types import PeerRecord

from .frozen import NOW, frozen_peers
from .screen_text import screen_text


class TableApp(App[None]):
    def compose(self) -> ComposeResult:
        yield PeerTable()


def order(table: PeerTable) -> list[str]:
    return [str(key.value) for key in table.rows]


def selected(table: PeerTable) -> str | None:
    peer = table.selected_peer
    return peer.id if peer else None


async def test_the_cursor_stays_on_its_peer_through_a_resort() -> None:
    async with TableApp().run_test(size=(80, 24)) as pilot:
        table = pilot.app.query_one(PeerTable)
        table.show(frozen_peers(), now=NOW)
        table.move_cursor(row=table.get_row_index("meld-5"))
        for _ in range(len(table.ordered_columns) + 1):
            table.cycle_sort()
            assert selected(table) == "meld-5"
        table.reverse_sort()
        assert selected(table) == "meld-5"


async def test_the_cursor_stays_on_its_peer_when_a_refresh_moves_its_row() -> None:
    async with TableApp().run_test(size=(80, 24)) as pilot:
        table = pilot.app.query_one(PeerTable)
        table.sort_by(1, reverse=True)  # balance, largest first
        peers = frozen_peers()
        table.show(peers, now=NOW)
        table.move_cursor(row=table.get_row_index("agent-7"))
        rich = [
            dataclasses.replace(p, balance=10**6) if p.id == "agent-7" else p
            for p in peers
        ]
        table.show(rich, now=NOW + 1)
        assert order(table)[0] == "agent-7"
        assert selected(table) == "agent-7"


async def test_each_column_sorts_its_own_values() -> None:
    async with TableApp().run_test(size=(80, 24)) as pilot:
        table = pilot.app.query_one(PeerTable)
        table.show(frozen_peers(), now=NOW)
        table.sort_by(3)  # available
        assert order(table) == ["old-bot", "agent-7", "agent-4c99792a", "meld-5"]
        table.sort_by(3)  # the same column again: reversed
        assert order(table) == ["meld-5", "agent-4c99792a", "agent-7", "old-bot"]
        table.sort_by(4)  # requests in the last hour
        assert order(table) == ["old-bot", "agent-7", "agent-4c99792a", "meld-5"]
        table.sort_by(7)  # state: disabled first
        assert order(table)[0] == "old-bot"


async def test_the_filter_keeps_matching_peers_and_the_cursor_if_it_can() -> None:
    async with TableApp().run_test(size=(80, 24)) as pilot:
        table = pilot.app.query_one(PeerTable)
        table.show(frozen_peers(), now=NOW)
        table.move_cursor(row=table.get_row_index("agent-7"))
        table.set_filter("AGENT")
        assert order(table) == ["agent-4c99792a", "agent-7"]
        assert selected(table) == "agent-7"
        table.set_filter("meld")
        assert order(table) == ["meld-5"]
        assert selected(table) == "meld-5"
        table.set_filter("")
        assert len(order(table)) == 4


async def test_an_unchanged_refresh_does_not_rebuild_the_rows() -> None:
    async with TableApp().run_test(size=(80, 24)) as pilot:
        table = pilot.app.query_one(PeerTable)
        peers: list[PeerRecord] = frozen_peers()
        table.show(peers, now=NOW)
        cleared: list[bool] = []
        real_clear = table.clear
        table.clear = lambda columns=False: (
            cleared.append(columns) or real_clear(columns)
        )  # type: ignore[method-assign]
        table.show(list(peers), now=NOW)
        assert cleared == []
        table.show(peers[:3], now=NOW)
        assert cleared == [False]


async def test_a_refresh_that_changes_only_seen_rewrites_cells_not_rows() -> None:
    async with TableApp().run_test(size=(80, 24)) as pilot:
        table = pilot.app.query_one(PeerTable)
        peers = frozen_peers()
        table.show(peers, now=NOW)
        table.move_cursor(row=table.get_row_index("meld-5"))
        cleared: list[bool] = []
        real_clear = table.clear
        table.clear = lambda columns=False: (
            cleared.append(columns) or real_clear(columns)
        )  # type: ignore[method-assign]

        table.show(peers, now=NOW + 50)

        assert cleared == []
        assert str(table.get_cell("agent-7", "seen")) == "2m"
        assert selected(table) == "meld-5"


async def test_the_sort_arrow_shows_on_every_column_at_80_columns() -> None:
    async with TableApp().run_test(size=(80, 24)) as pilot:
        table = pilot.app.query_one(PeerTable)
        table.show(frozen_peers(), now=NOW)
        for index, column in enumerate(COLUMNS):
            for reverse, arrow in ((False, "▲"), (True, "▼")):
                table.sort_by(index, reverse=reverse)
                await pilot.pause()
                header = screen_text(pilot.app).splitlines()[0]
                assert f"{column.label} {arrow}" in header, header
                assert table.sort_label == f"{column.label} {arrow}"
