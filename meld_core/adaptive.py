"""Finds how many slots a backend really serves, from measured latency."""

from __future__ import annotations

import logging
import math
from collections import deque

from .stats import percentile

log = logging.getLogger(__name__)

# Below this, added slots are still buying throughput.
UNCONGESTED = 1.25
# Share of a wasted slot's latency that must show before the limit drops, so noise
# alone does not take a slot away.
WASTE_SHOWN = 0.93
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
        self._stale = 0

    def observe(self, latency_s: float, output_tokens: int, *, saturated: bool) -> int:
        """Fold one finished request in; returns the slot count to use from now on.

        Args:
            saturated: whether every slot was busy, i.e. more slots had demand.
        """
        sample = latency_s / (1 + output_tokens)
        self._baseline.append(sample)
        if self._stale > 0:
            # Started under the previous limit, so it measures that one.
            self._stale -= 1
            return self.limit
        self._window.append(sample)
        if len(self._window) < max(4, self.limit):
            return self.limit

        best = min(self._baseline)
        current = percentile(self._window, 0.5) or best
        self._window.clear()
        ratio = current / best if best > 0 else 1.0
        limit = self.limit
        if limit > 1 and ratio > _congested(limit):
            # A backend serving P at once answers L requests about L / P times
            # slower, so L / ratio is how many it really serves; the median
            # overstates the slowdown, so round up.
            self._change(max(1, min(limit - 1, math.ceil(limit / ratio))), ratio)
        elif ratio < UNCONGESTED and saturated and limit < self.ceiling:
            self._change(limit + 1, ratio)
        return self.limit

    def _change(self, limit: int, ratio: float) -> None:
        way = "down" if limit < self.limit else "up"
        log.info("adaptive limit %s to %s (latency ratio %.2f)", way, limit, ratio)
        self._stale = self.limit
        self.limit = limit


def _congested(limit: int) -> float:
    """The latency ratio showing that the last of `limit` slots buys nothing."""
    # With one slot too many, latency grows by limit / (limit - 1); for a large
    # limit that is within noise, so the bar never drops below UNCONGESTED.
    return max(UNCONGESTED + 0.05, WASTE_SHOWN * limit / (limit - 1))
