"""The `sim` backend, timed by a virtual clock it is given instead of real sleeps."""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import time
from typing import Any

import pytest

from meld_core.backends import ChatRequest, Chunk, SimBackend, Usage, create_backend
from meld_core.config import BackendConfig
from meld_core.errors import UpstreamTimeout

PROMPT = "Count the slots of the node, please."
BODY = {"model": "sim-small", "messages": [{"role": "user", "content": PROMPT}]}


class VirtualClock:
    """Time that moves only when a test advances it; sleepers wake in order."""

    def __init__(self) -> None:
        self.now = 0.0
        self._sleepers: list[tuple[float, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def time(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        future = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (self.now + seconds, next(self._order), future))
        await future

    async def advance(self, seconds: float) -> None:
        """Move time forward, letting every task woken on the way run."""
        target = self.now + seconds
        await _settle()
        while self._sleepers and self._sleepers[0][0] <= target:
            when, _, future = heapq.heappop(self._sleepers)
            self.now = when
            if not future.done():
                future.set_result(None)
            await _settle()
        self.now = target


async def _settle() -> None:
    # Each woken task needs a few loop turns to reach its next sleep.
    for _ in range(10):
        await asyncio.sleep(0)


def sim(clock: VirtualClock, **overrides: Any) -> SimBackend:
    options: dict[str, Any] = {
        "name": "sim",
        "kind": "sim",
        "models": ("sim-small",),
        "ttft_s": 0.5,
        "tpot_s": 0.1,
        "parallel": 1,
        "jitter": 0.0,
        "request_timeout_s": 90.0,
    }
    config = BackendConfig(**(options | overrides))
    return SimBackend(config, sleep=clock.sleep, clock=clock.time)


def chat(
    request_id: str = "req-1", *, max_tokens: int = 10, **body: Any
) -> ChatRequest:
    stream = bool(body.get("stream"))
    return ChatRequest(request_id, "sim-small", BODY | body, max_tokens, stream)


@pytest.fixture
def clock() -> VirtualClock:
    return VirtualClock()


async def test_an_answer_takes_ttft_plus_tpot_per_further_token(
    clock: VirtualClock,
) -> None:
    backend = sim(clock)
    task = asyncio.create_task(backend.complete(chat(max_tokens=10)))

    await clock.advance(0.5 + 9 * 0.1 - 0.01)
    assert not task.done()
    await clock.advance(0.02)

    assert task.done()
    completion = task.result()
    assert completion.body["choices"][0]["finish_reason"] == "length"
    assert len(completion.body["choices"][0]["message"]["content"].split()) == 10


async def test_usage_counts_prompt_characters_and_generated_tokens(
    clock: VirtualClock,
) -> None:
    backend = sim(clock, ttft_s=0.0, tpot_s=0.0)

    completion = await backend.complete(chat(max_tokens=5))

    assert completion.usage == Usage(math.ceil(len(PROMPT) / 4), 5, estimated=False)
    assert completion.body["usage"] == {
        "prompt_tokens": completion.usage.input_tokens,
        "completion_tokens": 5,
        "total_tokens": completion.usage.input_tokens + 5,
    }


async def test_output_length_is_drawn_per_request_id_and_reproducible(
    clock: VirtualClock,
) -> None:
    backend = sim(clock, ttft_s=0.0, tpot_s=0.0)

    first = [
        await backend.complete(chat(f"req-{i}", max_tokens=1000)) for i in range(20)
    ]
    again = await backend.complete(chat("req-7", max_tokens=1000))

    lengths = {c.usage.output_tokens for c in first}
    assert all(16 <= n <= 64 for n in lengths) and len(lengths) > 3
    assert again.body["choices"] == first[7].body["choices"]
    assert {c.body["choices"][0]["finish_reason"] for c in first} == {"stop"}


async def test_parallel_limits_how_many_requests_it_works_on_at_once(
    clock: VirtualClock,
) -> None:
    backend = sim(clock, parallel=2, ttft_s=1.0, tpot_s=0.0)
    tasks = [asyncio.create_task(backend.complete(chat(f"r{i}"))) for i in range(5)]

    await clock.advance(0.0)
    assert backend.busy == 2
    await clock.advance(1.0)
    assert sum(t.done() for t in tasks) == 2 and backend.busy == 2
    await clock.advance(1.0)
    assert sum(t.done() for t in tasks) == 4 and backend.busy == 1
    await clock.advance(1.0)

    assert all(t.done() for t in tasks) and backend.busy == 0


async def test_a_stream_sends_a_chunk_per_token_in_time(clock: VirtualClock) -> None:
    backend = sim(clock)
    seen: list[tuple[float, Chunk | Usage]] = []

    async def consume() -> None:
        async for item in backend.stream(chat(max_tokens=3, stream=True)):
            seen.append((clock.now, item))

    task = asyncio.create_task(consume())
    await clock.advance(10.0)
    await task

    times = [t for t, _ in seen]
    items = [i for _, i in seen]
    chunks = [i.data for i in items if isinstance(i, Chunk)]
    assert times == pytest.approx([0.5, 0.5, 0.6, 0.7, 0.7, 0.7])
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert [len(c["choices"][0]["delta"].get("content", "")) > 0 for c in chunks] == [
        False,
        True,
        True,
        True,
        False,
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert items[-1] == Usage(math.ceil(len(PROMPT) / 4), 3)


async def test_a_stream_adds_the_usage_chunk_when_the_caller_asks(
    clock: VirtualClock,
) -> None:
    backend = sim(clock, ttft_s=0.0, tpot_s=0.0)
    request = chat(max_tokens=4, stream=True, stream_options={"include_usage": True})

    items = [item async for item in backend.stream(request)]

    usage_chunk, usage = items[-2], items[-1]
    assert isinstance(usage_chunk, Chunk) and usage_chunk.data["choices"] == []
    assert isinstance(usage, Usage)
    assert usage_chunk.data["usage"]["completion_tokens"] == usage.output_tokens == 4


async def test_a_sim_slower_than_the_timeout_raises_upstream_timeout(
    clock: VirtualClock,
) -> None:
    backend = sim(clock, ttft_s=2.0, request_timeout_s=1.0)
    task = asyncio.create_task(backend.complete(chat()))

    await clock.advance(0.99)
    assert not task.done()
    await clock.advance(0.02)

    with pytest.raises(UpstreamTimeout, match="within 1 s"):
        task.result()
    assert backend.busy == 0


async def test_waiting_for_a_busy_sim_counts_toward_the_timeout(
    clock: VirtualClock,
) -> None:
    backend = sim(clock, ttft_s=0.8, tpot_s=0.0, request_timeout_s=1.0)
    first = asyncio.create_task(backend.complete(chat("a", max_tokens=1)))
    second = asyncio.create_task(backend.complete(chat("b", max_tokens=1)))

    await clock.advance(1.01)

    assert first.result().usage.output_tokens == 1
    with pytest.raises(UpstreamTimeout):
        second.result()
    assert backend.busy == 0


async def test_a_stream_times_out_when_a_token_gap_exceeds_the_timeout(
    clock: VirtualClock,
) -> None:
    backend = sim(clock, ttft_s=0.1, tpot_s=2.0, request_timeout_s=1.0)
    received: list[Chunk | Usage] = []

    async def consume() -> None:
        async for item in backend.stream(chat(max_tokens=5, stream=True)):
            received.append(item)

    task = asyncio.create_task(consume())
    await clock.advance(1.2)

    with pytest.raises(UpstreamTimeout):
        await task
    assert len(received) == 2


async def test_cancelling_a_waiting_request_gives_its_place_up(
    clock: VirtualClock,
) -> None:
    backend = sim(clock, ttft_s=1.0, tpot_s=0.0)
    running = asyncio.create_task(backend.complete(chat("a")))
    waiting = asyncio.create_task(backend.complete(chat("b")))
    await clock.advance(0.5)

    waiting.cancel()
    await clock.advance(0.6)
    late = asyncio.create_task(backend.complete(chat("c")))
    await clock.advance(1.0)

    assert running.done() and waiting.cancelled() and late.done()
    assert backend.busy == 0


async def test_jitter_spreads_delays_within_its_bounds(clock: VirtualClock) -> None:
    backend = sim(clock, ttft_s=1.0, tpot_s=0.0, jitter=0.5, parallel=100)
    tasks = [asyncio.create_task(backend.complete(chat(f"r{i}"))) for i in range(40)]

    await clock.advance(0.49)
    early = sum(t.done() for t in tasks)
    await clock.advance(0.51)
    halfway = sum(t.done() for t in tasks)
    await clock.advance(0.51)

    assert early == 0
    assert 5 < halfway < 35
    assert all(t.done() for t in tasks)


async def test_zero_delays_answer_without_sleeping() -> None:
    async def no_sleep(seconds: float) -> None:
        raise AssertionError(f"slept {seconds}")

    config = BackendConfig("sim", "sim", ("sim-small",), ttft_s=0.0, tpot_s=0.0)
    backend = SimBackend(config, sleep=no_sleep)
    started = time.perf_counter()

    for i in range(200):
        await backend.complete(chat(f"r{i}", max_tokens=64))
        async for _ in backend.stream(chat(f"s{i}", max_tokens=64, stream=True)):
            pass

    assert time.perf_counter() - started < 5.0


async def test_create_backend_builds_a_healthy_sim() -> None:
    backend = create_backend(BackendConfig("sim", "sim", ("sim-small",)))

    assert isinstance(backend, SimBackend)
    assert await backend.health() is True
