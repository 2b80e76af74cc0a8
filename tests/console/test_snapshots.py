"""Pictures of every screen at 80x24 from a pinned node state (see frozen.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import pytest
from textual.pilot import Pilot

from meld_console.app import MeldConsole

from .conftest import steady_inputs
from .frozen import NOW, FrozenNode, frozen_config

LOG_LINES = """\
2026-05-28 20:26:38,001 INFO    meld_core.node: node meld-4652 serving on http://127.0.0.1:8787
2026-05-28 20:26:39,412 INFO    meld_core.router: request req_0001 sim 200 in 1240 ms
2026-05-28 20:26:40,003 WARNING meld_core.node: backend deepseek is now unhealthy
2026-05-28 20:26:41,917 ERROR   meld_core.router: request req_0006 failed: upstream
2026-05-28 20:26:42,100 DEBUG   meld_core.queue: slot freed on sim
"""


@pytest.fixture(autouse=True)
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Home is tmp_path, so the log file's name on screen is the same every run."""
    monkeypatch.setenv("HOME", str(tmp_path))


def frozen_app(tmp_path: Path, *, read_only: bool = False) -> MeldConsole:
    """The console over a FrozenNode, with a fixed clock and a fixed log file."""
    config = frozen_config(tmp_path)
    log_path = tmp_path / "node.log"
    log_path.write_text(LOG_LINES, encoding="utf-8")
    return MeldConsole(
        FrozenNode(config),
        read_only=read_only,
        clock=lambda: NOW,
        interval_s=60.0,
        log_path=log_path,
    )


def settle(*keys: str) -> Callable[[Pilot[Any]], Any]:
    """A run_before that waits for the first snapshot, presses keys, then renders."""

    async def run_before(pilot: Pilot[Any]) -> None:
        app = pilot.app
        assert isinstance(app, MeldConsole)
        await app.node_ready.wait()
        await pilot.pause()
        for key in keys:
            await pilot.press(key)
            await pilot.pause()
            if key in "12345":
                app.publish()
                await _drain(pilot, app)
        steady_inputs(app)
        await pilot.pause()

    return run_before


async def _drain(pilot: Pilot[Any], app: MeldConsole) -> None:
    # Workers (the peer list, the log reader) answer by message: let them land.
    await app.workers.wait_for_complete()
    await pilot.pause()
    await pilot.pause()


SCREENS: Iterable[tuple[str, tuple[str, ...]]] = (
    ("dashboard", ()),
    ("peers", ("2",)),
    ("network", ("3",)),
    ("stress", ("4",)),
    ("log", ("5",)),
    ("help", ("question_mark",)),
    ("grant_dialog", ("2", "g", "tab", "5", "0", "0")),
    ("statement", ("2", "enter")),
)


@pytest.mark.parametrize(("name", "keys"), SCREENS, ids=[s[0] for s in SCREENS])
def test_screen_matches_its_picture(
    snap_compare: Any, tmp_path: Path, name: str, keys: tuple[str, ...]
) -> None:
    assert snap_compare(frozen_app(tmp_path), run_before=settle(*keys))


def test_read_only_peers_screen_matches_its_picture(
    snap_compare: Any, tmp_path: Path
) -> None:
    app = frozen_app(tmp_path, read_only=True)
    assert snap_compare(app, run_before=settle("2"))


def test_dashboard_in_the_ansi_dark_theme_matches_its_picture(
    snap_compare: Any, tmp_path: Path
) -> None:
    app = frozen_app(tmp_path)

    async def run_before(pilot: Pilot[Any]) -> None:
        pilot.app.theme = "ansi-dark"
        await settle()(pilot)

    assert snap_compare(app, run_before=run_before)
