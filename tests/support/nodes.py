"""Start real nodes on 127.0.0.1 for tests, and call them as signed peers."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx

from meld_core.config import load_config
from meld_core.node import Node
from meld_core.signing import MeldAuth

SIM_BACKEND = """
[[backends]]
name = "sim"
kind = "sim"
models = ["sim-small"]
max_concurrency = {slots}
max_queue = {max_queue}
queue_timeout_s = {queue_timeout_s}
request_timeout_s = {request_timeout_s}
ttft_s = {ttft_s}
tpot_s = {tpot_s}
parallel = 4
"""

PRICING = """
[pricing."sim-small"]
input_per_mtok = 100000
output_per_mtok = 400000
min_charge = 1
max_output_tokens = 256
"""


def write_config(
    directory: Path,
    *,
    backends: str | None = None,
    extra: str = "",
    **sim: Any,
) -> Path:
    """A config file with one sim backend (or the given backends) and a price."""
    settings = {
        "slots": 2,
        "max_queue": 64,
        "queue_timeout_s": 30,
        "request_timeout_s": 30,
        "ttft_s": 0.005,
        "tpot_s": 0.0005,
    } | sim
    text = (
        '[node]\nid = "meld-test"\nlisten = "127.0.0.1:0"\n'
        f'data_dir = "{directory / "data"}"\n'
        + (backends if backends is not None else SIM_BACKEND.format(**settings))
        + PRICING
        + extra
    )
    path = directory / "config.toml"
    path.write_text(text)
    return path


@asynccontextmanager
async def running_node(config_path: Path) -> AsyncIterator[Node]:
    """A node started in this event loop, stopped on exit."""
    node = Node(load_config(config_path))
    await node.start()
    try:
        yield node
    finally:
        await node.stop()


def peer_client(node: Node, peer: str, secret: str, **kwargs: Any) -> httpx.AsyncClient:
    """An httpx client that signs as `peer`."""
    return httpx.AsyncClient(
        base_url=node.url, auth=MeldAuth(peer, secret), timeout=30, **kwargs
    )


def chat_body(model: str = "sim-small", **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": "hello"}]} | fields
