"""A backend card's sparklines cover the whole history the node keeps."""

from __future__ import annotations

import dataclasses

from textual.app import App, ComposeResult

from meld_console.widgets import BackendCard
from meld_core.types import BackendSnapshot

from .frozen import frozen_snapshot
from .screen_text import screen_text


def spiked_backend() -> BackendSnapshot:
    """The sim backend with one slow bucket five minutes ago and calm since."""
    sim = frozen_snapshot().backends[0]
    return dataclasses.replace(
        sim,
        latency_history=(9000.0,) + (100.0,) * 149,
        throughput_history=(1.0,) * 150,
    )


class CardApp(App[None]):
    def __init__(self, backend: BackendSnapshot | None = None) -> None:
        super().__init__()
        self.backend = backend or spiked_backend()

    def compose(self) -> ComposeResult:
        yield BackendCard(self.backend)


async def test_the_sparklines_cover_five_minutes_at_80_columns() -> None:
    async with CardApp().run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        history = screen_text(pilot.app).splitlines()[2]

        assert history.startswith(" 5m lat █")  # the old spike, still in view
        assert "max 9.00s" in history
        assert "100ms" in history  # the latest latency


async def test_a_card_keeps_its_three_lines_at_60_columns() -> None:
    async with CardApp().run_test(size=(60, 20)) as pilot:
        await pilot.pause()
        lines = screen_text(pilot.app).splitlines()

        assert lines[0].startswith(" sim")
        assert lines[1].startswith(" slots") and "37/256" in lines[1]
        assert lines[2].startswith(" 5m lat")


async def test_the_rate_beside_the_sparkline_is_the_last_full_bucket() -> None:
    filling = dataclasses.replace(
        spiked_backend(), throughput_history=(1.0,) * 148 + (4.5, 0.5)
    )
    async with CardApp(filling).run_test(size=(80, 24)) as pilot:
        await pilot.pause()
        history = screen_text(pilot.app).splitlines()[2]

        assert "4.5/s max" in history
