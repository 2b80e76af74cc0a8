"""The fair slot queue: order, positions, admission, timeouts and freed slots."""

from __future__ import annotations

import asyncio
import itertools

import pytest

from meld_core import queue as queue_module
from meld_core.errors import Overloaded, QueueTimeout
from meld_core.queue import SlotQueue, Waiter


async def _let_run() -> None:
    """Let every ready task run until it waits again."""
    for _ in range(5):
        await asyncio.sleep(0)


async def _served_order(queue: SlotQueue, arrivals: list[str]) -> list[str]:
    order: list[str] = []
    waiters = [(peer, queue.try_acquire(peer)) for peer in arrivals]

    async def wait(peer: str, waiter: object) -> None:
        assert waiter is not None
        await queue.wait(waiter, 10)  # type: ignore[arg-type]
        order.append(peer)

    tasks = [asyncio.create_task(wait(p, w)) for p, w in waiters]
    await _let_run()
    for _ in arrivals:
        queue.release()
        await _let_run()
    await asyncio.gather(*tasks)
    return order


async def test_burst_of_one_peer_does_not_starve_another() -> None:
    queue = SlotQueue(1, 100, 60)
    assert queue.try_acquire("hog") is None  # takes the only slot
    order = await _served_order(queue, ["hog"] * 4 + ["small"])
    assert order.index("small") == 1, order


async def test_waiters_of_one_peer_are_served_in_arrival_order() -> None:
    queue = SlotQueue(1, 100, 60)
    queue.try_acquire("a")
    waiters = [queue.try_acquire("a") for _ in range(3)]
    assert [queue.position(w) for w in waiters if w] == [1, 2, 3]


async def test_position_counts_round_robin_turns_of_other_peers() -> None:
    queue = SlotQueue(1, 100, 60)
    queue.try_acquire("x")
    _, a2, a3 = (queue.try_acquire("a") for _ in range(3))
    b1 = queue.try_acquire("b")
    assert b1 is not None and a3 is not None and a2 is not None
    assert queue.position(b1) == 2
    assert queue.position(a2) == 3
    assert queue.position(a3) == 4


async def test_full_queue_is_refused_at_once_with_retry_after() -> None:
    queue = SlotQueue(1, 2, 600)
    queue.try_acquire("a")
    queue.try_acquire("a")
    queue.try_acquire("b")
    with pytest.raises(Overloaded) as caught:
        queue.try_acquire("c")
    assert caught.value.retry_after_s is not None and caught.value.retry_after_s >= 1


async def test_predicted_wait_over_the_timeout_is_refused_at_once() -> None:
    queue = SlotQueue(2, 100, queue_timeout_s=10)
    queue.observe_service(4.0)
    for _ in range(2):
        assert queue.try_acquire("a") is None
    for _ in range(4):
        queue.try_acquire("a")  # positions 1..4 wait about 4 s and 8 s
    with pytest.raises(Overloaded):
        queue.try_acquire("b")  # position 5 would wait about 12 s


async def test_a_waiter_past_its_deadline_gets_queue_timeout_and_leaves() -> None:
    queue = SlotQueue(1, 10, 0.05)
    queue.try_acquire("a")
    waiter = queue.try_acquire("b")
    assert waiter is not None
    with pytest.raises(QueueTimeout):
        await queue.wait(waiter, 0.05)
    assert queue.waiting == 0
    assert queue.in_use == 1


async def test_a_cancelled_waiter_frees_its_place() -> None:
    queue = SlotQueue(1, 10, 60)
    queue.try_acquire("a")
    waiter = queue.try_acquire("b")
    assert waiter is not None
    task = asyncio.create_task(queue.wait(waiter, 60))
    await _let_run()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert queue.waiting == 0
    queue.release()
    assert queue.in_use == 0


async def test_positions_are_reported_as_they_change() -> None:
    queue = SlotQueue(1, 10, 60)
    queue.try_acquire("a")
    queue.try_acquire("a")
    waiter = queue.try_acquire("a")
    assert waiter is not None
    seen: list[int] = []
    task = asyncio.create_task(
        queue.wait(waiter, 60, lambda position, eta: seen.append(position))
    )
    await _let_run()
    queue.release()
    await _let_run()
    queue.release()
    await task
    assert seen == [2, 1]


async def test_unlimited_queue_never_waits() -> None:
    queue = SlotQueue(0, 0, 1)
    assert all(queue.try_acquire("a") is None for _ in range(1000))


async def test_a_position_that_grows_is_reported_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(queue_module, "POSITION_EVERY_S", 600.0)
    queue = SlotQueue(1, 10, 60)
    queue.try_acquire("x")
    waiters = [queue.try_acquire("a") for _ in range(3)]
    last = waiters[-1]
    assert last is not None
    told: asyncio.Queue[int] = asyncio.Queue()
    task = asyncio.create_task(
        queue.wait(last, 60, lambda position, eta: told.put_nowait(position))
    )
    assert await asyncio.wait_for(told.get(), 5) == 3

    queue.try_acquire("b")  # round-robin: b's first turn comes before a's third

    assert await asyncio.wait_for(told.get(), 5) == 4
    task.cancel()
    await asyncio.wait({task}, timeout=5)
    assert task.cancelled()


async def test_churn_behind_a_waiter_does_not_stretch_its_report_interval(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    every_s = 1.0
    monkeypatch.setattr(queue_module, "POSITION_EVERY_S", every_s)
    loop = asyncio.get_running_loop()
    queue = SlotQueue(1, 10, 60)
    queue.try_acquire("x")
    waiter = queue.try_acquire("p")
    assert waiter is not None
    told_at: list[float] = []
    task = asyncio.create_task(
        queue.wait(waiter, 60, lambda position, eta: told_at.append(loop.time()))
    )
    # A request joins behind the waiter and gives up, more often than the interval.
    for _ in range(20):
        if len(told_at) >= 4:
            break
        await asyncio.sleep(every_s * 0.6)
        behind = queue.try_acquire("p")
        assert isinstance(behind, Waiter)
        leaving = asyncio.create_task(queue.wait(behind, 60))
        await _let_run()
        leaving.cancel()
        await _let_run()
    task.cancel()
    await asyncio.wait({task}, timeout=5)
    assert task.cancelled()
    gaps = [later - earlier for earlier, later in itertools.pairwise(told_at)]
    assert max(gaps) < every_s * 1.5, gaps
