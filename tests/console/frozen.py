"""A node stand-in with pinned state, so snapshot tests render the same every time."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from meld_core.config import Config, parse_config
from meld_core.errors import InsufficientCredits, NotFound
from meld_core.types import (
    BackendSnapshot,
    NodeSnapshot,
    PeerRecord,
    RemoteSnapshot,
    RequestRecord,
    Transfer,
)

NOW = 1_780_000_000.0  # a fixed wall-clock time, in UTC


def frozen_config(data_dir: Path) -> Config:
    """A configuration like the first-run default, with a fixed node id."""
    text = f"""
[node]
id = "meld-4652"
listen = "127.0.0.1:8787"
data_dir = "{data_dir}"

[[backends]]
name = "sim"
kind = "sim"
models = ["sim-small"]
max_concurrency = 4

[[backends]]
name = "deepseek"
kind = "openai"
base_url = "https://api.deepseek.com"
models = ["deepseek-chat"]
max_concurrency = 64
"""
    return parse_config(text, data_dir / "config.toml")


def _wave(n: int, base: float, swing: float, period: int) -> tuple[float, ...]:
    # A fixed, smooth series: the same numbers on every run.
    pattern = [0, 1, 3, 6, 8, 9, 8, 6, 3, 1]
    return tuple(base + swing * pattern[(i * 10 // period) % 10] / 9 for i in range(n))


def frozen_snapshot() -> NodeSnapshot:
    """A busy node: one sim backend with a queue, one remote API backend."""
    sim = BackendSnapshot(
        name="sim",
        kind="sim",
        models=("sim-small",),
        healthy=True,
        in_flight=4,
        slots=4,
        max_concurrency=4,
        queued=37,
        max_queue=256,
        eta_s=6.4,
        p50_ms=1240.0,
        p95_ms=3410.0,
        success_rate=0.987,
        completed=1204,
        failed=16,
        latency_history=_wave(150, 800.0, 2600.0, 20),
        throughput_history=_wave(150, 1.0, 2.2, 30),
    )
    deepseek = BackendSnapshot(
        name="deepseek",
        kind="openai",
        models=("deepseek-chat",),
        healthy=False,
        in_flight=0,
        slots=64,
        max_concurrency=64,
        queued=0,
        max_queue=256,
        eta_s=0.0,
        p50_ms=None,
        p95_ms=None,
        success_rate=None,
        completed=0,
        failed=3,
    )
    recent = tuple(
        RequestRecord(
            request_id=f"req_{i:04d}",
            peer=("agent-4c99792a", "agent-7", "meld-5")[i % 3],
            model="sim-small",
            backend="sim",
            status=(200, 200, 200, 429, 200, 502)[i % 6],
            error_type={3: "overloaded", 5: "upstream_error"}.get(i % 6),
            queued_ms=float((i * 379) % 5000),
            latency_ms=float(900 + (i * 613) % 3000),
            input_tokens=40,
            output_tokens=64,
            credits=0 if i % 6 in (3, 5) else 30,
            at=NOW - i * 0.7,
        )
        for i in range(30)
    )
    remote = RemoteSnapshot(
        id="meld-5",
        url="http://meld-5.example:8787",
        healthy=True,
        p50_ms=15810.0,
        last_seen=NOW - 4,
        models=(
            {"id": "llama3.2:3b", "eta_s": 12.5, "queued": 3},
            {"id": "qwen2.5:7b", "eta_s": 0.0, "queued": 0},
        ),
    )
    gone = RemoteSnapshot(
        id="meld-9",
        url="http://meld-9.example:8787",
        healthy=False,
        p50_ms=None,
        last_seen=NOW - 3600,
        error="connect error",
    )
    return NodeSnapshot(
        node_id="meld-4652",
        version="0.1.0",
        listen="127.0.0.1:8787",
        taken_at=NOW,
        uptime_s=3 * 3600 + 7 * 60 + 12,
        requests_per_s=4.2,
        success_rate=0.987,
        in_flight=4,
        queued=37,
        backends=(sim, deepseek),
        recent=recent,
        remotes=(remote, gone),
    )


def frozen_peers() -> list[PeerRecord]:
    return [
        PeerRecord(
            "agent-4c99792a", True, 9400, 600, NOW - 86400, NOW - 2, 412, 120, 16
        ),
        PeerRecord("agent-7", True, 120, 0, NOW - 7200, NOW - 75, 31),
        PeerRecord("meld-5", True, 250_000, 1200, NOW - 3 * 86400, NOW - 1, 1804),
        PeerRecord("old-bot", False, 0, 0, NOW - 30 * 86400, None, 0, 10, 1),
    ]


class FrozenNode:
    """Answers like a node, from pinned records; commands change only its memory."""

    def __init__(self, config: Config) -> None:
        self.config = config
        self.url = "http://127.0.0.1:8787"
        self.console_peer = config.console_peer
        self.console_secret = "msk_" + "C" * 43
        self._peers = {p.id: p for p in frozen_peers()}
        self._transfers: list[Transfer] = [
            Transfer(
                1,
                "grant",
                "system",
                "agent-4c99792a",
                10000,
                "opening",
                "console",
                NOW - 86400,
            ),
            Transfer(
                2,
                "settle",
                "agent-4c99792a",
                "income",
                600,
                "req_0001",
                "node",
                NOW - 60,
            ),
        ]

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def snapshot(self) -> NodeSnapshot:
        return frozen_snapshot()

    async def peers(self) -> list[PeerRecord]:
        return list(self._peers.values())

    async def statement(self, peer_id: str, *, limit: int = 50) -> list[Transfer]:
        return [t for t in self._transfers if peer_id in (t.source, t.dest)][:limit]

    async def add_peer(
        self, peer_id: str, *, credits: int = 0, actor: str = "console"
    ) -> tuple[PeerRecord, str]:
        record = PeerRecord(peer_id, True, credits, 0, NOW, None, 0)
        self._peers[peer_id] = record
        return record, "msk_" + "A" * 43

    async def rotate_peer(self, peer_id: str, *, actor: str) -> str:
        return "msk_" + "B" * 43

    async def set_peer_enabled(
        self, peer_id: str, enabled: bool, *, actor: str
    ) -> None:
        self._peers[peer_id] = dataclasses.replace(
            self._peers[peer_id], enabled=enabled
        )

    async def grant(
        self, peer_id: str, amount: int, *, reason: str, actor: str
    ) -> Transfer:
        return self._move(peer_id, amount, "grant", reason, actor)

    async def deduct(
        self, peer_id: str, amount: int, *, reason: str, actor: str
    ) -> Transfer:
        if amount > self._peers[peer_id].available:
            raise InsufficientCredits("more than available")
        return self._move(peer_id, -amount, "deduct", reason, actor)

    def _move(
        self, peer_id: str, signed: int, kind: str, reason: str, actor: str
    ) -> Transfer:
        if peer_id not in self._peers:
            raise NotFound(f"no peer {peer_id}")
        peer = self._peers[peer_id]
        self._peers[peer_id] = dataclasses.replace(peer, balance=peer.balance + signed)
        transfer = Transfer(
            len(self._transfers) + 1,
            kind,
            "system",
            peer_id,
            abs(signed),
            reason,
            actor,
            NOW,
        )
        self._transfers.append(transfer)
        return transfer
