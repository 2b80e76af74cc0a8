"""Finds how many slots a backend really serves, from measured latency."""

from __future__ import annotations

import logging
from collections import deque

from .stats import percentile

log = logging.getLogger(__name__)

# Per-token time this far above its best means the backend queues inside itself.
CONGESTED = 1.6
# Below this, added slots are still buying throughput.
UNCONGESTED = 1.25
BASELINE_SAMPLES = 200


class AdaptiveLimit:
    """A slot count that grows while latency holds and shrinks when it climbs.

    Latency is measured per output token, so long and short answers compare. The
    best recent value is the baseline: a backend that serves N at once without
    slowing keeps it; one that queues inside itself shows it as a rising ratio.
    """

    def __init__(self, ceiling: int, *, start: int | None = None) -> None:
        self.ceiling = max(1, ceiling)
        self.limit = min(self.ceiling, start or self.ceiling)
        self._baseline: deque[float] = deque(maxlen=BASELINE_SAMPLES)
        self._window: list[float] = []

    def observe(self, latency_s: float, output_tokens: int, *, saturated: bool) -> int:
        """Fold one finished request in; returns the slot count to use from now on.

        Args:
            saturated: whether every slot was busy, i.e. more slots had demand.
        """
        sample = latency_s / (1 + output_tokens)
        self._baseline.append(sample)
        self._window.append(sample)
        if len(self._window) < max(4, self.limit):
            return self.limit

        best = min(self._baseline)
        current = percentile(self._window, 0.5) or best
        self._window.clear()
        ratio = current / best if best > 0 else 1.0
        if ratio > CONGESTED and self.limit > 1:
            self.limit -= 1
            log.info(
                "adaptive limit down to %s (latency ratio %.2f)", self.limit, ratio
            )
        elif ratio < UNCONGESTED and saturated and self.limit < self.ceiling:
            self.limit += 1
            log.info("adaptive limit up to %s (latency ratio %.2f)", self.limit, ratio)
        return self.limit
