"""Adaptive slots: the node learns how many requests a backend really serves."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from meld_core.adaptive import AdaptiveLimit
from meld_core.stats import BackendStats, percentile
from tests.support.nodes import chat_body, peer_client, running_node, write_config


def test_latency_that_grows_with_slots_shrinks_the_limit() -> None:
    limit = AdaptiveLimit(8)
    limit.observe(1.0, 9, saturated=True)  # alone: 0.1 s per token
    for _ in range(40):
        # Eight at once on a backend that serves one: eight times slower.
        limit.observe(8.0, 9, saturated=True)
    assert limit.limit == 1


def test_steady_latency_under_demand_grows_the_limit_to_the_ceiling() -> None:
    limit = AdaptiveLimit(6, start=1)
    for _ in range(60):
        limit.observe(1.0, 9, saturated=True)
    assert limit.limit == 6


def test_without_demand_the_limit_does_not_grow() -> None:
    limit = AdaptiveLimit(6, start=2)
    for _ in range(60):
        limit.observe(1.0, 9, saturated=False)
    assert limit.limit == 2


def test_history_buckets_count_zero_for_quiet_time() -> None:
    now = [1000.0]
    stats = BackendStats(clock=lambda: now[0])
    stats.record(100.0, ok=True)
    stats.record(300.0, ok=True)
    now[0] += 10
    stats.record(50.0, ok=False)
    latency, throughput = stats.history()
    assert latency[-6] == 100.0 or latency[-6] == 300.0
    assert throughput[-6] == 1.0  # two completions in a two-second bucket
    assert (
        latency[-1] == 0.0 and throughput[-1] == 0.0
    )  # the failure is not a completion
    assert stats.success_rate() == pytest.approx(2 / 3)
    assert percentile([1, 2, 3, 4, 5], 0.5) == 3


@pytest.mark.asyncio
async def test_an_adaptive_backend_keeps_the_queue_in_the_node(tmp_path: Path) -> None:
    backend = """
[[backends]]
name = "sim"
kind = "sim"
models = ["sim-small"]
max_concurrency = 4
adaptive = true
ttft_s = 0.01
tpot_s = 0.001
parallel = 1
"""
    async with running_node(write_config(tmp_path, backends=backend)) as node:
        _, secret = await node.add_peer("agent-1", credits=100_000)
        route = node.router.routes["sim"]
        assert route.queue.slots == 4
        async with peer_client(node, "agent-1", secret) as client:

            async def worker() -> None:
                for _ in range(12):
                    response = await client.post(
                        "/v1/chat/completions", json=chat_body(max_tokens=8)
                    )
                    assert response.status_code == 200

            await asyncio.gather(*(worker() for _ in range(6)))
        assert route.queue.slots <= 2
        assert node.snapshot().backends[0].slots == route.queue.slots


def test_history_keeps_each_closed_bucket_median_and_the_open_one_live() -> None:
    now = [2000.0]
    stats = BackendStats(clock=lambda: now[0])
    for latency in (10.0, 30.0, 20.0, 90.0, 40.0):
        stats.record(latency, ok=True)
    now[0] += 2
    for latency in (5.0, 7.0, 9.0):
        stats.record(latency, ok=True)
    latency, throughput = stats.history()
    assert (latency[-2], throughput[-2]) == (30.0, 2.5)
    assert (latency[-1], throughput[-1]) == (7.0, 1.5)
    stats.record(1.0, ok=True)
    stats.record(1.0, ok=True)
    latency, _ = stats.history()
    assert (latency[-2], latency[-1]) == (30.0, 5.0)
