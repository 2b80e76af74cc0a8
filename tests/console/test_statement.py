"""A peer's statement: the latest transfers, or only the grants and deducts."""

from __future__ import annotations

from pathlib import Path

from meld_console.screens import StatementScreen
from meld_console.widgets import PeerTable
from meld_core.config import Config
from meld_core.types import Transfer

from .conftest import running, until
from .frozen import NOW, FrozenNode, frozen_config
from .screen_text import screen_text
from .test_footer import footer, frozen_console


class BusyPeerNode(FrozenNode):
    """A frozen node whose agent-7 made 300 requests since its one grant."""

    def __init__(self, config: Config) -> None:
        super().__init__(config)
        self._transfers.append(
            Transfer(3, "grant", "system", "agent-7", 5000, "pilot budget", "ops", NOW)
        )
        for n in range(300):
            kind = ("hold", "settle")[n % 2]
            self._transfers.append(
                Transfer(4 + n, kind, "agent-7", "income", 30, f"req_{n}", "node", NOW)
            )


async def test_the_statement_shows_only_grants_and_deducts_on_f(
    tmp_path: Path,
) -> None:
    app = frozen_console(tmp_path, BusyPeerNode(frozen_config(tmp_path)))
    async with running(app) as pilot:
        await pilot.press("2")
        await until(lambda: "Statement" in footer(app), pilot, what="peer keys")
        table = app.screen.query_one(PeerTable)
        table.move_cursor(row=table.get_row_index("agent-7"))
        await pilot.press("enter")
        await until(
            lambda: isinstance(app.screen, StatementScreen), pilot, what="statement"
        )
        assert "last 50 transfers" in screen_text(app)
        assert "pilot budget" not in screen_text(app)
        assert "f Grants/deducts only" in footer(app)

        await pilot.press("f")
        text = screen_text(app)
        assert "last 1 grants and deducts" in text
        assert "pilot budget" in text and "req_" not in text
