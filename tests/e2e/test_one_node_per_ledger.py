"""A second node on a ledger that a node already serves from refuses to start, and
leaves the first node's holds alone."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from meld_core.config import load_config
from meld_core.errors import StartError
from meld_core.ledger import Ledger
from meld_core.node import Node
from meld_core.signing import new_secret
from tests.support.nodes import chat_body, peer_client, running_node, write_config

pytestmark = pytest.mark.asyncio


async def _open_holds(db: Path) -> int:
    async with await Ledger.open(db) as ledger:
        return (await ledger.totals())["held:alice"]


async def test_a_second_node_on_the_same_ledger_refuses_and_keeps_live_holds(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, ttft_s=1.0, tpot_s=0.001)
    async with running_node(config) as first:
        secret = new_secret()
        await first.add_peer("alice", credits=0)
        await first.ledger.rotate_peer("alice", secret, grace_s=0, actor="test")
        await first.grant("alice", 100_000, reason="test", actor="test")
        async with peer_client(first, "alice", secret) as client:
            call = asyncio.create_task(
                client.post("/v1/chat/completions", json=chat_body(max_tokens=8))
            )
            while await _open_holds(first.config.db_path) == 0:
                await asyncio.sleep(0.01)

            second = Node(load_config(config))
            with pytest.raises(StartError, match="another node"):
                await second.start()
            assert await _open_holds(first.config.db_path) > 0

            answer = await call
        assert answer.status_code == 200
        charged = answer.json()["meld"]["credits_charged"]
        assert charged > 0
        balance = await first.ledger.balance("alice")
        assert (balance.balance, balance.held) == (100_000 - charged, 0)
        await first.ledger.check_invariants()


async def test_a_node_starts_again_on_its_ledger_once_the_first_stopped(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path)
    async with running_node(config):
        pass
    async with running_node(config) as again:
        assert again.url.startswith("http://127.0.0.1:")
