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


def test_a_backend_serving_two_brings_eight_slots_down_to_two() -> None:
    limit = AdaptiveLimit(8)
    limit.observe(1.0, 9, saturated=True)
    # Eight at once on a backend that serves two: most wait three turns inside it.
    while limit.limit == 8:
        limit.observe(4.0, 9, saturated=True)
    # Three at once on it: two of the three wait one turn.
    while limit.limit == 3:
        limit.observe(2.0, 9, saturated=True)

    assert limit.limit == 2


def test_samples_from_before_a_change_do_not_move_the_limit_again() -> None:
    limit = AdaptiveLimit(8)
    limit.observe(1.0, 9, saturated=True)
    while limit.limit == 8:
        limit.observe(4.0, 9, saturated=True)
    changed_to = limit.limit

    # The eight requests started under the old limit finish slow, as they must.
    for _ in range(8):
        limit.observe(4.0, 9, saturated=True)

    assert limit.limit == changed_to


def test_noise_at_the_right_limit_does_not_take_a_slot_away() -> None:
    limit = AdaptiveLimit(2, start=2)
    limit.observe(1.0, 9, saturated=False)
    for _ in range(40):
        limit.observe(1.5, 9, saturated=False)

    assert limit.limit == 2


SIM_PARALLEL_2 = """
[[backends]]
name = "sim"
kind = "sim"
models = ["sim-small"]
max_concurrency = 8
max_queue = 64
queue_timeout_s = 120
request_timeout_s = 120
adaptive = true
ttft_s = 0.02
tpot_s = 0.002
parallel = 2
"""
ROOMY_LIMITS = "[limits]\nrequests_per_minute = 100000\nmax_in_flight = 100\n"


@pytest.mark.asyncio
async def test_twenty_callers_on_a_sim_serving_two_bring_the_limit_toward_two(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, backends=SIM_PARALLEL_2, extra=ROOMY_LIMITS)
    async with running_node(config) as node:
        _, secret = await node.add_peer("agent-1", credits=10_000_000)
        route = node.router.routes["sim"]
        slots: list[int] = []
        queued: list[int] = []
        statuses: list[int] = []
        async with peer_client(node, "agent-1", secret) as client:

            async def caller() -> None:
                for _ in range(6):
                    response = await client.post(
                        "/v1/chat/completions", json=chat_body(max_tokens=16)
                    )
                    statuses.append(response.status_code)
                    slots.append(route.queue.slots)
                    queued.append(route.queue.waiting)

            await asyncio.gather(*(caller() for _ in range(20)))

    assert statuses == [200] * 120  # nothing timed out or was refused
    settled = slots[len(slots) // 2 :]
    assert max(settled) <= 3 and min(settled) == 2, slots
    # Callers beyond the slots waited in the node's queue, where they are fair.
    assert max(queued) > 10
