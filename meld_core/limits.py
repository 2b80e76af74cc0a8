"""Per-peer request limits: requests per minute and requests in flight."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable

from .config import Limits
from .errors import RateLimited

WINDOW_S = 60.0


class PeerLimiter:
    """Counts each peer's recent and running requests against its limits.

    `reserve` runs on the ledger's thread (inside admission) while `finish` runs on
    the event loop, so the counters sit behind a lock.
    """

    def __init__(
        self, defaults: Limits, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.defaults = defaults
        self.clock = clock
        self._lock = threading.Lock()
        self._starts: dict[str, deque[float]] = {}
        self._running: dict[str, int] = {}
        self._reserved: dict[str, str] = {}

    def reserve(
        self,
        peer: str,
        request_id: str,
        own_limits: tuple[int | None, int | None] = (None, None),
    ) -> None:
        """Count a request against its peer, or raise RateLimited and count nothing.

        Args:
            own_limits: the peer's own requests per minute and in flight, as the
                ledger has them now; None falls back to the node's `[limits]`.
        """
        now = self.clock()
        rpm = own_limits[0] or self.defaults.requests_per_minute
        max_in_flight = own_limits[1] or self.defaults.max_in_flight
        with self._lock:
            starts = self._starts.setdefault(peer, deque())
            while starts and starts[0] <= now - WINDOW_S:
                starts.popleft()
            if len(starts) >= rpm:
                wait = starts[0] + WINDOW_S - now
                raise RateLimited(
                    f"over {rpm} requests per minute",
                    retry_after_s=float(max(1, math.ceil(wait))),
                )
            if self._running.get(peer, 0) >= max_in_flight:
                raise RateLimited(
                    f"over {max_in_flight} requests in flight", retry_after_s=1.0
                )
            starts.append(now)
            self._running[peer] = self._running.get(peer, 0) + 1
            self._reserved[request_id] = peer

    def finish(self, request_id: str) -> None:
        """End a reserved request's hold on its peer's in-flight count; idempotent."""
        with self._lock:
            peer = self._reserved.pop(request_id, None)
            if peer is not None:
                self._running[peer] -= 1

    def in_flight(self, peer: str) -> int:
        return self._running.get(peer, 0)
