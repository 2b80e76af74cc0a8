"""Queueing and overload over real HTTP: positions, 429s, 503s and disconnects."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from meld_core import router as router_module
from meld_core.node import Node
from meld_core.router import Exchange
from tests.support.nodes import chat_body, peer_client, running_node, write_config

pytestmark = pytest.mark.asyncio

SLOW = {"slots": 1, "ttft_s": 1.0, "tpot_s": 0.001}


async def eventually(check: Callable[[], object], timeout_s: float = 10.0) -> None:
    """Wait, without a fixed sleep, until `check()` is true; fail after the deadline."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(0.01)


def _route(node: Node):  # type: ignore[no-untyped-def]
    return node.router.routes["sim"]


async def _start_blocker(client: httpx.AsyncClient) -> asyncio.Task[httpx.Response]:
    task = asyncio.create_task(
        client.post("/v1/chat/completions", json=chat_body(max_tokens=2))
    )
    return task


async def test_a_waiting_stream_is_told_its_queue_position(tmp_path: Path) -> None:
    async with running_node(write_config(tmp_path, **SLOW)) as node:
        _, secret = await node.add_peer("agent-1", credits=1000)
        async with peer_client(node, "agent-1", secret) as client:
            blocker = await _start_blocker(client)
            await eventually(lambda: _route(node).in_flight == 1)
            events = []
            async with client.stream(
                "POST",
                "/v1/chat/completions",
                json=chat_body(stream=True, max_tokens=2),
            ) as response:
                assert response.headers["x-meld-queue-position"] == "1"
                event = None
                async for line in response.aiter_lines():
                    if line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("data: "):
                        events.append((event, line[6:]))
                        event = None
            assert (await blocker).status_code == 200
    queue_events = [json.loads(d) for e, d in events if e == "meld.queue"]
    assert queue_events[0]["position"] == 1 and queue_events[0]["eta_s"] >= 0
    done = json.loads(next(d for e, d in events if e == "meld.done"))
    assert done["queue_position"] == 1 and done["queued_ms"] > 0


async def test_a_full_queue_answers_429_overloaded_at_once(tmp_path: Path) -> None:
    config = write_config(tmp_path, max_queue=1, **SLOW)
    async with running_node(config) as node:
        _, secret = await node.add_peer("agent-1", credits=1000)
        async with peer_client(node, "agent-1", secret) as client:
            first = await _start_blocker(client)
            await eventually(lambda: _route(node).in_flight == 1)
            second = await _start_blocker(client)
            await eventually(lambda: _route(node).queue.waiting == 1)
            third = await client.post("/v1/chat/completions", json=chat_body())
            assert third.status_code == 429
            assert third.json()["error"]["type"] == "overloaded"
            assert int(third.headers["retry-after"]) >= 1
            assert third.json()["retry_after_s"] >= 1
            assert (await first).status_code == (await second).status_code == 200
        await eventually(lambda: _route(node).queue.in_use == 0)
        await node.ledger.check_invariants()
        assert (await node.ledger.balance("agent-1")).held == 0


async def test_a_request_still_waiting_at_the_timeout_gets_503(tmp_path: Path) -> None:
    config = write_config(tmp_path, queue_timeout_s=0.2, **SLOW)
    async with running_node(config) as node:
        _, secret = await node.add_peer("agent-1", credits=1000)
        async with peer_client(node, "agent-1", secret) as client:
            blocker = await _start_blocker(client)
            await eventually(lambda: _route(node).in_flight == 1)
            waited = await client.post("/v1/chat/completions", json=chat_body())
            assert waited.status_code == 503
            assert waited.json()["error"]["type"] == "queue_timeout"
            assert "retry-after" in waited.headers
            await blocker
        balance = await node.ledger.balance("agent-1")
        charged = 1000 - balance.balance
        assert balance.held == 0 and charged >= 1  # only the blocker paid


async def test_a_peer_over_its_in_flight_limit_gets_429_rate_limited(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, extra="[limits]\nmax_in_flight = 1\n", **SLOW)
    async with running_node(config) as node:
        _, secret = await node.add_peer("agent-1", credits=1000)
        _, other = await node.add_peer("agent-2", credits=1000)
        async with peer_client(node, "agent-1", secret) as client:
            blocker = await _start_blocker(client)
            await eventually(lambda: _route(node).in_flight == 1)
            limited = await client.post("/v1/chat/completions", json=chat_body())
            assert limited.status_code == 429
            assert limited.json()["error"]["type"] == "rate_limited"
            assert "retry-after" in limited.headers
            async with peer_client(node, "agent-2", other) as second:
                # Another peer is not limited by agent-1's burst: it queues instead.
                allowed = await second.post("/v1/chat/completions", json=chat_body())
            assert allowed.status_code == 200
            await blocker


async def test_a_peer_over_its_requests_per_minute_gets_429(tmp_path: Path) -> None:
    config = write_config(tmp_path, extra="[limits]\nrequests_per_minute = 2\n")
    async with running_node(config) as node:
        _, secret = await node.add_peer("agent-1", credits=1000)
        async with peer_client(node, "agent-1", secret) as client:
            codes = [
                (
                    await client.post("/v1/chat/completions", json=chat_body())
                ).status_code
                for _ in range(3)
            ]
    assert codes == [200, 200, 429]


async def test_a_caller_who_leaves_while_queued_frees_place_and_hold(
    tmp_path: Path,
) -> None:
    async with running_node(write_config(tmp_path, **SLOW)) as node:
        _, secret = await node.add_peer("agent-1", credits=1000)
        async with peer_client(node, "agent-1", secret) as client:
            blocker = await _start_blocker(client)
            await eventually(lambda: _route(node).in_flight == 1)
            blocker_hold = (await node.ledger.balance("agent-1")).held
            async with client.stream(
                "POST", "/v1/chat/completions", json=chat_body(stream=True)
            ) as response:
                async for line in response.aiter_lines():
                    if line.startswith("event: meld.queue"):
                        break
            await eventually(lambda: _route(node).queue.waiting == 0)
            await eventually(lambda: len(node.router.exchanges) == 1)
            assert (await node.ledger.balance("agent-1")).held == blocker_hold
            await blocker
        await eventually(lambda: not node.router.exchanges)
        balance = await node.ledger.balance("agent-1")
        assert balance.held == 0
        records = await node.ledger.requests(limit=5)
        assert any(r.status == 499 for r in records)


async def test_a_caller_who_leaves_while_running_frees_slot_and_hold(
    tmp_path: Path,
) -> None:
    async with running_node(write_config(tmp_path, **SLOW)) as node:
        _, secret = await node.add_peer("agent-1", credits=1000)
        async with peer_client(node, "agent-1", secret) as client:
            task = await _start_blocker(client)
            await eventually(lambda: _route(node).in_flight == 1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        await eventually(lambda: _route(node).queue.in_use == 0)
        await eventually(lambda: not node.router.exchanges)
        balance = await node.ledger.balance("agent-1")
        assert (balance.balance, balance.held) == (1000, 0)


async def test_unlimited_backend_passes_straight_through(tmp_path: Path) -> None:
    # A queue of one would refuse the second waiter: with no slots there is none.
    config = write_config(tmp_path, slots=0, max_queue=1, ttft_s=0.3)
    async with running_node(config) as node:
        _, secret = await node.add_peer("agent-1", credits=10_000)
        async with peer_client(node, "agent-1", secret) as client:
            tasks = [
                asyncio.create_task(
                    client.post("/v1/chat/completions", json=chat_body())
                )
                for _ in range(6)
            ]
            await eventually(lambda: _route(node).in_flight == 6)
            assert _route(node).queue.waiting == 0
            responses = await asyncio.gather(*tasks)
    assert {r.status_code for r in responses} == {200}
    assert {r.json()["meld"]["queue_position"] for r in responses} == {0}


async def test_callers_who_leave_during_admission_free_their_in_flight_slots(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_config(tmp_path, extra="[limits]\nmax_in_flight = 2\n")
    async with running_node(config) as node:
        _, secret = await node.add_peer("agent-1", credits=1000)
        opened: asyncio.Queue[Exchange] = asyncio.Queue()
        open_exchange = node.router.open

        def spy(*args: Any) -> Exchange:
            exchange = open_exchange(*args)
            opened.put_nowait(exchange)
            return exchange

        monkeypatch.setattr(node.router, "open", spy)
        async with peer_client(node, "agent-1", secret) as client:
            for _ in range(3):
                # Another process (the command line, say) holds the write lock.
                blocker = sqlite3.connect(node.config.db_path, isolation_level=None)
                blocker.execute("BEGIN IMMEDIATE")
                leaving = asyncio.create_task(
                    client.post("/v1/chat/completions", json=chat_body())
                )
                exchange = await asyncio.wait_for(opened.get(), 10)
                leaving.cancel()
                assert exchange.task is not None
                await asyncio.wait({exchange.task}, timeout=10)
                assert exchange.task.cancelled()
                blocker.execute("COMMIT")
                blocker.close()
                await asyncio.wait_for(node.router.drain(), 10)
            assert node.router.limiter.in_flight("agent-1") == 0
            assert (await node.ledger.balance("agent-1")).held == 0
            response = await client.post("/v1/chat/completions", json=chat_body())
        assert response.status_code == 200, response.text


async def test_a_stream_past_the_longest_a_stream_may_run_ends_with_504(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(router_module, "MAX_STREAM_S", 0.2)
    config = write_config(tmp_path, ttft_s=0.01, tpot_s=0.05)
    async with running_node(config) as node:
        _, secret = await node.add_peer("agent-1", credits=1000)
        body = chat_body(stream=True, max_tokens=200)
        async with peer_client(node, "agent-1", secret) as client:
            response = await client.post("/v1/chat/completions", json=body)
        await eventually(lambda: not node.router.exchanges)
        balance = await node.ledger.balance("agent-1")
        records = await node.ledger.requests(limit=1)
    assert "event: meld.error" in response.text
    assert "upstream_timeout" in response.text and "[DONE]" not in response.text
    assert (balance.balance, balance.held) == (1000, 0)
    assert (records[0].status, records[0].error_type) == (504, "upstream_timeout")
