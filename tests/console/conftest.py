"""Fixtures for the console: a real node on a sim backend, and a pinned one."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from meld_console.app import MeldConsole
from meld_core.config import Config, parse_config
from meld_core.node import Node

SIZE = (80, 24)
DEADLINE_S = 10.0


def sim_config(data_dir: Path, *, ttft_s: float = 0.001, tpot_s: float = 0.0) -> Config:
    """A node on a free port with one fast sim backend, its data in `data_dir`."""
    text = f"""
[node]
id = "meld-test"
listen = "127.0.0.1:0"
data_dir = "{data_dir}"

[[backends]]
name = "sim"
kind = "sim"
models = ["sim-small"]
max_concurrency = 4
ttft_s = {ttft_s}
tpot_s = {tpot_s}
parallel = 4

[pricing."sim-small"]
input_per_mtok = 100000
output_per_mtok = 400000
min_charge = 1
"""
    return parse_config(text, data_dir / "config.toml")


@pytest.fixture(autouse=True)
def utc(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Clock times render in UTC, so pictures do not depend on the machine."""
    monkeypatch.setenv("TZ", "UTC")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()


@pytest.fixture
def config(tmp_path: Path) -> Config:
    return sim_config(tmp_path / "data")


@asynccontextmanager
async def running(
    app: MeldConsole,
) -> AsyncIterator[Pilot[int]]:
    """The app under the pilot at 80x24, once its node serves."""
    async with app.run_test(size=SIZE) as pilot:
        await asyncio.wait_for(app.node_ready.wait(), DEADLINE_S)
        await pilot.pause()
        yield pilot


@asynccontextmanager
async def console(
    config: Config, *, read_only: bool = False, interval_s: float = 0.1
) -> AsyncIterator[tuple[MeldConsole, Node, Pilot[int]]]:
    """The real console with a real node, refreshing fast so tests wait little."""
    node = Node(config)
    app = MeldConsole(node, read_only=read_only, interval_s=interval_s)
    async with running(app) as pilot:
        yield app, node, pilot


async def until(
    check: Callable[[], bool | Awaitable[bool]],
    pilot: Pilot[int],
    *,
    what: str,
    deadline_s: float = DEADLINE_S,
) -> None:
    """Wait, letting the app run, until `check` holds; fail after the deadline."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        await pilot.pause(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def steady_inputs(app: MeldConsole) -> None:
    """Stop every cursor blinking, so screenshots do not depend on timing."""
    for box in app.screen.query(Input):
        box.cursor_blink = False


@pytest.fixture
def logged(config: Config) -> Iterator[Path]:
    """The console's own logging set up as `run_console` does; yields the log file."""
    import logging

    from meld_console.logs import configure_console_logging

    configure_console_logging(config)
    yield config.log_path
    root = logging.getLogger()
    for handler in list(root.handlers):
        if getattr(handler, "baseFilename", None) == str(config.log_path):
            root.removeHandler(handler)
            handler.close()
