"""How the console refreshes: only what is in view, never stacked, paused on demand."""

from __future__ import annotations

import asyncio
from pathlib import Path

from meld_console.app import MeldConsole
from meld_console.screens import DashboardScreen, HelpScreen, LogScreen, PeersScreen
from meld_core.config import Config
from meld_core.errors import StartError
from meld_core.types import NodeSnapshot, PeerRecord

from .conftest import running, until
from .frozen import NOW, FrozenNode, frozen_config
from .screen_text import screen_text


class CountingNode(FrozenNode):
    """A frozen node that counts snapshots and can make the peer list slow."""

    def __init__(self, config: Config, *, peers_delay_s: float = 0.0) -> None:
        super().__init__(config)
        self.snapshots = 0
        self.peer_calls = 0
        self.peer_calls_open = 0
        self.most_open = 0
        self.peers_delay_s = peers_delay_s

    def snapshot(self) -> NodeSnapshot:
        self.snapshots += 1
        return super().snapshot()

    async def peers(self) -> list[PeerRecord]:
        self.peer_calls += 1
        self.peer_calls_open += 1
        self.most_open = max(self.most_open, self.peer_calls_open)
        try:
            await asyncio.sleep(self.peers_delay_s)
            return await super().peers()
        finally:
            self.peer_calls_open -= 1


def app_over(node: FrozenNode, *, interval_s: float = 0.1) -> MeldConsole:
    return MeldConsole(node, clock=lambda: NOW, interval_s=interval_s)


async def test_a_slow_peer_poll_never_stacks(tmp_path: Path) -> None:
    node = CountingNode(frozen_config(tmp_path), peers_delay_s=0.3)
    app = app_over(node, interval_s=0.02)
    async with running(app) as pilot:
        await pilot.press("2")
        await until(lambda: node.peer_calls >= 2, pilot, what="two peer polls")
        # Ticks went on while each poll was out, yet only one poll was ever open.
        assert node.snapshots >= 2 * node.peer_calls
        assert node.most_open == 1


async def test_a_hidden_screen_does_not_refresh(tmp_path: Path) -> None:
    node = CountingNode(frozen_config(tmp_path))
    app = app_over(node)
    async with running(app) as pilot:
        dashboard = app.screen
        assert isinstance(dashboard, DashboardScreen)
        shown: list[str] = []
        dashboard.show_snapshot = lambda snapshot: shown.append("dashboard")  # type: ignore[method-assign]
        await pilot.press("2")
        await until(lambda: isinstance(app.screen, PeersScreen), pilot, what="peers")
        shown.clear()
        calls = node.peer_calls
        await until(lambda: node.peer_calls >= calls + 3, pilot, what="peer polls")
        assert shown == []


async def test_a_screen_behind_a_dialog_does_not_refresh(tmp_path: Path) -> None:
    node = CountingNode(frozen_config(tmp_path))
    app = app_over(node)
    async with running(app) as pilot:
        await pilot.press("2")
        await until(lambda: node.peer_calls >= 1, pilot, what="a peer poll")
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        calls = node.peer_calls
        ticks = node.snapshots
        await until(lambda: node.snapshots >= ticks + 5, pilot, what="ticks")
        assert node.peer_calls == calls
        await pilot.press("escape")
        await until(lambda: node.peer_calls > calls, pilot, what="polls again")


async def test_pause_stops_taking_snapshots_until_resumed(tmp_path: Path) -> None:
    node = CountingNode(frozen_config(tmp_path))
    app = app_over(node)
    async with running(app) as pilot:
        await pilot.press("p")
        assert app.paused
        frozen_at = node.snapshots
        # Wait on real ticks: ten intervals pass with no snapshot taken.
        await asyncio.sleep(10 * app.interval_s)
        await pilot.pause()
        assert node.snapshots == frozen_at
        assert "paused" in screen_text(app).splitlines()[1]
        await pilot.press("p")
        await until(lambda: node.snapshots > frozen_at, pilot, what="resumed")


async def test_plus_and_minus_change_the_refresh_interval(tmp_path: Path) -> None:
    app = app_over(CountingNode(frozen_config(tmp_path)), interval_s=1.0)
    async with running(app) as pilot:
        await pilot.press("plus")
        assert app.interval_s == 0.5
        await pilot.press("plus")
        assert app.interval_s == 0.5  # the fastest
        await pilot.press("minus", "minus", "minus")
        assert app.interval_s == 5.0
        assert "every 5s" in screen_text(app).splitlines()[1]


async def test_number_keys_switch_screens(tmp_path: Path) -> None:
    app = app_over(CountingNode(frozen_config(tmp_path)))
    async with running(app) as pilot:
        seen = []
        for key in "23451":
            await pilot.press(key)
            seen.append(app.current_mode)
        assert seen == ["peers", "network", "stress", "log", "dashboard"]


async def test_quit_asks_first_while_a_stress_run_is_going(tmp_path: Path) -> None:
    app = app_over(CountingNode(frozen_config(tmp_path)))
    async with running(app) as pilot:
        app.stress_running = True
        await pilot.press("q")
        assert "stress run is going" in screen_text(app)
        await pilot.press("enter")  # opens on Cancel
        assert not app.stopping
        await pilot.press("q", "tab", "enter")
        await until(lambda: app.stopping, pilot, what="stopping")


async def test_ctrl_q_asks_first_while_a_stress_run_is_going(tmp_path: Path) -> None:
    app = app_over(CountingNode(frozen_config(tmp_path)))
    async with running(app) as pilot:
        app.stress_running = True
        await pilot.press("ctrl+q")
        assert "stress run is going" in screen_text(app)
        await pilot.press("enter")  # opens on Cancel
        assert not app.stopping and app.is_running
        await pilot.press("ctrl+q", "tab", "enter")
        await until(lambda: app.stopping, pilot, what="stopping")


async def test_ctrl_q_quits_at_once_without_a_stress_run(tmp_path: Path) -> None:
    app = app_over(CountingNode(frozen_config(tmp_path)))
    async with running(app) as pilot:
        await pilot.press("ctrl+q")
        await until(lambda: app.stopping, pilot, what="stopping")


async def test_the_help_lists_the_keys_of_every_screen(tmp_path: Path) -> None:
    app = app_over(CountingNode(frozen_config(tmp_path)))
    async with running(app) as pilot:
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        listed = {what for _, keys in app.key_sections() for _, what in keys}
        for screen in (PeersScreen, LogScreen, MeldConsole):
            for binding in screen.BINDINGS:
                what = binding[2] if isinstance(binding, tuple) else binding.description
                assert what in listed


class BrokenNode(FrozenNode):
    """A node whose start fails, as one whose port is taken does."""

    async def start(self) -> None:
        raise StartError("cannot listen on 127.0.0.1:8787: Address already in use")


async def test_a_node_that_cannot_start_ends_the_console_with_a_reason(
    tmp_path: Path,
) -> None:
    app = app_over(BrokenNode(frozen_config(tmp_path)))
    async with app.run_test(size=(80, 24)) as pilot:
        await until(lambda: app.return_code is not None, pilot, what="the exit")
    assert app.return_code == 1
    assert not app.node_ready.is_set()
