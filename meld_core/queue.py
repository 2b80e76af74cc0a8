"""Slots of one backend and the fair, bounded queue in front of them (section 5)."""

from __future__ import annotations

import asyncio
import math
import time
from collections import OrderedDict, deque
from collections.abc import Callable

from .errors import Overloaded, QueueTimeout

POSITION_EVERY_S = 5.0


class Waiter:
    """A request waiting for a slot; `changed` fires whenever the queue moves."""

    __slots__ = ("changed", "enqueued_at", "granted", "peer")

    def __init__(self, peer: str, enqueued_at: float) -> None:
        self.peer = peer
        self.enqueued_at = enqueued_at
        self.granted = False
        self.changed = asyncio.Event()


class SlotQueue:
    """Grants slots first-come first-served within a peer and round-robin across peers.

    `slots` may change while requests run (adaptive backends); a slot freed above the
    new limit is simply not handed on.
    """

    def __init__(
        self,
        slots: int,
        max_queue: int,
        queue_timeout_s: float,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.slots = slots
        self.max_queue = max_queue
        self.queue_timeout_s = queue_timeout_s
        self.in_use = 0
        self.clock = clock
        self._peers: OrderedDict[str, deque[Waiter]] = OrderedDict()
        self._waiting = 0
        # Mean service time in seconds, learned from finished requests.
        self.service_s = 1.0
        self._service_known = False

    @property
    def unlimited(self) -> bool:
        return self.slots == 0

    @property
    def waiting(self) -> int:
        return self._waiting

    def observe_service(self, seconds: float) -> None:
        """Fold one measured service time into the estimate behind ETAs."""
        if not self._service_known:
            self.service_s, self._service_known = seconds, True
        else:
            self.service_s += 0.1 * (seconds - self.service_s)

    def eta_s(self, position: int) -> float:
        """Predicted wait of the request at a 1-based queue position (0: none)."""
        if position <= 0 or self.unlimited:
            return 0.0
        return math.ceil(position / max(1, self.slots)) * self.service_s

    def arrival_eta_s(self) -> float:
        """The wait a request arriving now would have."""
        if self.unlimited or (self.in_use < self.slots and not self._waiting):
            return 0.0
        return self.eta_s(self._waiting + 1)

    def check_admission(self) -> None:
        """Refuse at once a request that the queue cannot take or serve in time."""
        if self.unlimited or (self.in_use < self.slots and not self._waiting):
            return
        eta = self.arrival_eta_s()
        if self._waiting >= self.max_queue:
            raise Overloaded("the queue is full", retry_after_s=self._retry_after(eta))
        # Before any request was measured the ETA is a guess: refuse on facts only.
        if self._service_known and eta > self.queue_timeout_s:
            raise Overloaded(
                f"predicted wait {eta:.1f}s exceeds the queue timeout",
                retry_after_s=self._retry_after(eta),
            )

    def _retry_after(self, eta: float) -> float:
        drain = eta - self.queue_timeout_s
        return float(max(1, math.ceil(max(drain, self.service_s / max(1, self.slots)))))

    def try_acquire(self, peer: str) -> Waiter | None:
        """Take a free slot now (None), or join the queue and get a waiter."""
        if self.unlimited or (self.in_use < self.slots and not self._waiting):
            self.in_use += 1
            return None
        self.check_admission()
        waiter = Waiter(peer, self.clock())
        self._peers.setdefault(peer, deque()).append(waiter)
        self._waiting += 1
        # A new peer's first turn can come before waiters of busier peers.
        self._notify()
        return waiter

    async def wait(
        self,
        waiter: Waiter,
        deadline_s: float,
        on_position: Callable[[int, float], None] | None = None,
    ) -> None:
        """Wait until the waiter holds a slot; QueueTimeout after `deadline_s`.

        Args:
            on_position: told the position and ETA whenever the position changes,
                and at least every POSITION_EVERY_S seconds.
        """
        try:
            await asyncio.wait_for(self._until_granted(waiter, on_position), deadline_s)
        except BaseException as exc:
            # A slot granted in the same tick as a timeout or a disconnect goes back.
            if waiter.granted:
                self.release()
            else:
                self._remove(waiter)
            if isinstance(exc, TimeoutError):
                raise QueueTimeout(
                    f"no slot freed within {self.queue_timeout_s:g}s",
                    retry_after_s=self._retry_after(self.arrival_eta_s()),
                ) from None
            raise

    async def _until_granted(
        self, waiter: Waiter, on_position: Callable[[int, float], None] | None
    ) -> None:
        last, told_at = -1, 0.0
        while not waiter.granted:
            waiter.changed.clear()
            if on_position is None:
                await waiter.changed.wait()
                continue
            position, now = self.position(waiter), self.clock()
            if position != last or now - told_at >= POSITION_EVERY_S:
                on_position(position, self.eta_s(position))
                last, told_at = position, now
            # Only what is left of the interval: churn that wakes the waiter
            # without moving it must not push the next report back.
            remaining = POSITION_EVERY_S - (self.clock() - told_at)
            await _changed_within(waiter, max(0.0, remaining))

    def release(self) -> None:
        """Give a slot back and hand free slots to the next waiters in fair order."""
        self.in_use -= 1
        self._dispatch()

    def resize(self, slots: int) -> None:
        """Change the number of slots; more slots serve waiters at once."""
        self.slots = slots
        self._dispatch()

    def position(self, waiter: Waiter) -> int:
        """The 1-based place in service order of a queued waiter, under round-robin."""
        if waiter.granted:
            return 0
        own = self._peers.get(waiter.peer)
        if own is None:
            return 0
        index = own.index(waiter)
        ahead = 0
        before = True
        for peer, waiters in self._peers.items():
            if peer == waiter.peer:
                before = False
                continue
            # Peers ahead in the rotation get one more turn before this waiter's.
            ahead += min(len(waiters), index + 1 if before else index)
        return ahead + index + 1

    def _dispatch(self) -> None:
        moved = False
        while self._waiting and (self.unlimited or self.in_use < self.slots):
            peer, waiters = next(iter(self._peers.items()))
            waiter = waiters.popleft()
            if waiters:
                self._peers.move_to_end(peer)
            else:
                del self._peers[peer]
            self._waiting -= 1
            self.in_use += 1
            waiter.granted = True
            waiter.changed.set()
            moved = True
        if moved:
            self._notify()

    def _remove(self, waiter: Waiter) -> None:
        waiters = self._peers.get(waiter.peer)
        if waiters is None or waiter not in waiters:
            return
        waiters.remove(waiter)
        self._waiting -= 1
        if not waiters:
            del self._peers[waiter.peer]
        self._notify()

    def _notify(self) -> None:
        for waiters in self._peers.values():
            for waiter in waiters:
                waiter.changed.set()


async def _changed_within(waiter: Waiter, timeout_s: float) -> None:
    """Wait until the waiter's queue moves, or `timeout_s` passes."""
    # Not wait_for: on Python 3.11 it swallows a cancel that lands as the event
    # fires, and the waiter would then wait on after its caller left.
    changed = asyncio.ensure_future(waiter.changed.wait())
    try:
        await asyncio.wait({changed}, timeout=timeout_s)
    finally:
        changed.cancel()
