"""Rolling latency and throughput figures of one backend, for snapshots and ETAs."""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable

BUCKET_S = 2.0
HISTORY_BUCKETS = 150  # five minutes of two-second buckets
RECENT_SAMPLES = 256


def percentile(values: list[float], q: float) -> float | None:
    """The q-quantile (0..1) of the values by nearest rank; None for none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
    return ordered[rank]


class _Bucket:
    """Finished requests of one BUCKET_S interval; summed up once it closes."""

    __slots__ = ("completions", "latencies", "median_ms", "start")

    def __init__(self, start: float) -> None:
        self.start = start
        self.completions = 0
        self.latencies: list[float] = []
        self.median_ms: float | None = None

    def close(self) -> None:
        # A closed bucket never changes, so a snapshot must not sort it again:
        # five minutes of buckets at 1,000 requests/s took 24 ms to re-sort.
        self.median_ms = percentile(self.latencies, 0.5)
        self.latencies = []

    def median(self) -> float:
        if self.latencies:
            return percentile(self.latencies, 0.5) or 0.0
        return self.median_ms or 0.0


class BackendStats:
    """Counts and latencies of finished requests, bucketed in time for sparklines."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self.completed = 0
        self.failed = 0
        self._latencies: deque[float] = deque(maxlen=RECENT_SAMPLES)
        self._outcomes: deque[bool] = deque(maxlen=RECENT_SAMPLES)
        self._buckets: deque[_Bucket] = deque(maxlen=HISTORY_BUCKETS)

    def record(self, latency_ms: float, ok: bool) -> None:
        """Fold one finished request in."""
        if ok:
            self.completed += 1
            self._latencies.append(latency_ms)
        else:
            self.failed += 1
        self._outcomes.append(ok)
        start = self.clock() // BUCKET_S * BUCKET_S
        if not self._buckets or self._buckets[-1].start != start:
            if self._buckets:
                self._buckets[-1].close()
            self._buckets.append(_Bucket(start))
        if ok:
            bucket = self._buckets[-1]
            bucket.completions += 1
            bucket.latencies.append(latency_ms)

    def p50_ms(self) -> float | None:
        return percentile(list(self._latencies), 0.5)

    def p95_ms(self) -> float | None:
        return percentile(list(self._latencies), 0.95)

    def success_rate(self) -> float | None:
        if not self._outcomes:
            return None
        return sum(self._outcomes) / len(self._outcomes)

    def history(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Median latency (ms) and completions/s, one value per bucket, oldest first.

        Buckets with no traffic count as zero so the sparkline's time axis stays even.
        """
        now = self.clock() // BUCKET_S * BUCKET_S
        by_start = {bucket.start: bucket for bucket in self._buckets}
        latency: list[float] = []
        throughput: list[float] = []
        for i in range(HISTORY_BUCKETS - 1, -1, -1):
            bucket = by_start.get(now - i * BUCKET_S)
            latency.append(bucket.median() if bucket else 0.0)
            throughput.append(bucket.completions / BUCKET_S if bucket else 0.0)
        return tuple(latency), tuple(throughput)

    def recent_latencies(self) -> list[float]:
        return list(self._latencies)
