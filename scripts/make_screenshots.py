"""Regenerate screenshots/*.svg: the console over a sim node under a real stress run.

    python scripts/make_screenshots.py [--size 100x30] [--out screenshots]

Two nodes run in this process: `meld-4`, which the console embeds, and `meld-5`,
which `meld-4` watches as a remote. Stress runs from three peers load `meld-4`,
one loads `meld-5`; once the sparklines have history, each screen is saved.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import socket
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from textual.widgets import DataTable, Input

from meld_console.app import MeldConsole
from meld_console.logs import configure_console_logging
from meld_console.screens import CreditDialog, PeersScreen
from meld_console.widgets import PeerTable
from meld_core.config import Config, parse_config
from meld_core.node import Node
from meld_core.stress import run_stress

log = logging.getLogger("make_screenshots")

WARM_UP_S = 40.0
MODEL = "sim-small"
PEERS = (("agent-4c99792a", 250_000), ("agent-7", 40_000), ("research-bot", 9_000))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def node_config(root: Path, node_id: str, port: int, remote_port: int | None) -> Config:
    remote = ""
    if remote_port is not None:
        remote = f"""
[[remotes]]
id = "meld-5"
url = "http://127.0.0.1:{remote_port}"
peer_id = "meld-4"
"""
    text = f"""
[node]
id = "{node_id}"
listen = "127.0.0.1:{port}"
data_dir = "{root / node_id}"

[[backends]]
name = "sim"
kind = "sim"
models = ["{MODEL}"]
max_concurrency = 4
max_queue = 256
ttft_s = 0.4
tpot_s = 0.02
parallel = 4
jitter = 0.3

[[backends]]
name = "sim-large"
kind = "sim"
models = ["sim-large"]
max_concurrency = 1
ttft_s = 1.5
tpot_s = 0.05
jitter = 0.2

[pricing."{MODEL}"]
input_per_mtok = 100000
output_per_mtok = 400000
min_charge = 1

[limits]
requests_per_minute = 6000
max_in_flight = 64
{remote}"""
    return parse_config(text, root / f"{node_id}.toml")


async def load(
    node: Node, peer: str, secret: str, model: str, levels: list[int]
) -> None:
    """Stress runs, one after another, until cancelled."""
    with contextlib.suppress(asyncio.CancelledError):
        while True:
            await run_stress(
                node.url, peer, secret, model, levels, requests_per_level=40
            )


async def until(check: Callable[[], bool], deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    while not check():
        if time.monotonic() > end:
            raise TimeoutError("the demo never produced the data it waits for")
        await asyncio.sleep(0.2)


async def shoot(app: MeldConsole, out: Path, name: str) -> None:
    """Refresh the screen in view, let its workers answer, and save it."""
    app.publish()
    await app.workers.wait_for_complete()
    await asyncio.sleep(0.3)
    app.save_screenshot(f"{name}.svg", path=str(out))
    print(f"wrote {out / name}.svg")


async def main(size: tuple[int, int], out: Path) -> None:
    root = Path(tempfile.mkdtemp(prefix="meld-demo-"))
    remote = Node(node_config(root, "meld-5", free_port(), None))
    await remote.start()
    config = node_config(root, "meld-4", free_port(), int(remote.url.rsplit(":", 1)[1]))
    configure_console_logging(config)
    app = MeldConsole(Node(config), interval_s=0.5)
    tasks: list[asyncio.Task[None]] = []
    async with app.run_test(size=size) as pilot:
        await app.node_ready.wait()
        node = app.node
        assert isinstance(node, Node)
        for peer, credits in PEERS:
            _, secret = await node.add_peer(peer, credits=credits, actor="demo")
            levels = [2, 6, 12] if peer != "agent-7" else [1, 3]
            tasks.append(asyncio.create_task(load(node, peer, secret, MODEL, levels)))
        tasks.append(
            asyncio.create_task(
                load(node, node.console_peer, node.console_secret, "sim-large", [2])
            )
        )
        tasks.append(
            asyncio.create_task(
                load(remote, remote.console_peer, remote.console_secret, MODEL, [8])
            )
        )
        await node.grant("agent-7", 500, reason="welcome credit", actor="demo")

        started = time.monotonic()
        await until(lambda: time.monotonic() - started > WARM_UP_S, WARM_UP_S + 5)
        await node.remotes.poll_all()

        await shoot(app, out, "dashboard")
        await pilot.press("2")
        await shoot(app, out, "peers")
        table = app.screen.query_one(PeerTable)
        table.move_cursor(row=table.get_row_index("agent-7"))
        await pilot.press("g", "tab", *"2500", "tab", *"pilot bonus")
        assert isinstance(app.screen, CreditDialog)
        await shoot(app, out, "grant")
        await pilot.press("escape")
        assert isinstance(app.screen, PeersScreen)
        await pilot.press("enter")
        await shoot(app, out, "statement")
        await pilot.press("escape", "3")
        await shoot(app, out, "network")
        await pilot.press("4")
        stress = app.screen
        # Enter starts a run from anywhere on the screen; the focus stays off the
        # text boxes, so the number keys below still switch screens.
        stress.query_one("#stress-levels", Input).value = "4,8,16"
        await pilot.press("enter")
        results = stress.query_one("#stress-results", DataTable)
        await until(lambda: results.row_count >= 2, 120)
        await shoot(app, out, "stress")
        await pilot.press("escape")
        await pilot.press("5")
        await shoot(app, out, "log")
        await pilot.press("1", "question_mark")
        await shoot(app, out, "help")

        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
    await remote.stop()


def parse_size(text: str) -> tuple[int, int]:
    width, _, height = text.partition("x")
    return int(width), int(height)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=parse_size, default=(100, 30))
    parser.add_argument("--out", type=Path, default=Path("screenshots"))
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    os.environ.setdefault("TZ", "UTC")
    asyncio.run(main(args.size, args.out.resolve()))
    sys.exit(0)
