"""The header line keeps its numbers on screen at 80 columns."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from meld_console.app import MeldConsole
from meld_core.types import NodeSnapshot

from .conftest import running
from .frozen import NOW, FrozenNode, frozen_config, frozen_snapshot
from .screen_text import screen_text


def busy_snapshot() -> NodeSnapshot:
    """The longest values a first-run node reaches in ordinary use."""
    return dataclasses.replace(
        frozen_snapshot(),
        node_id="meld-4652",
        listen="127.0.0.1:8787",
        uptime_s=12 * 86400 + 3 * 3600,
        requests_per_s=1234.5,
        success_rate=1.0,
        in_flight=128,
        queued=1234,
    )


async def header_at(tmp_path: Path, snapshot: NodeSnapshot) -> str:
    node = FrozenNode(frozen_config(tmp_path))
    app = MeldConsole(
        node, snapshot_source=lambda: snapshot, clock=lambda: NOW, interval_s=60.0
    )
    async with running(app) as pilot:
        app.publish()
        await pilot.pause()
        return screen_text(app).splitlines()[0]


async def test_the_header_shows_every_number_at_80_columns_with_the_longest_values(
    tmp_path: Path,
) -> None:
    header = await header_at(tmp_path, busy_snapshot())

    for shown in ("meld-4652", "queued 1234", "in flight 128", "ok 100.0%"):
        assert shown in header
    assert "1234 req/s" in header or "1235 req/s" in header
    assert "up 12d03h" in header


async def test_the_header_keeps_the_listen_port_when_the_full_address_does_not_fit(
    tmp_path: Path,
) -> None:
    header = await header_at(tmp_path, frozen_snapshot())

    assert "queued 37" in header
    assert ":8787" in header
