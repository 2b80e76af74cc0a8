"""A backend with its slots, queue, health and measurements."""

from __future__ import annotations

import time
from collections.abc import Callable

from .adaptive import AdaptiveLimit
from .backends.base import Backend
from .errors import Unavailable
from .queue import SlotQueue
from .stats import BackendStats
from .types import BackendSnapshot


class Route:
    """Everything the router keeps about one backend."""

    def __init__(
        self, backend: Backend, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.backend = backend
        self.config = backend.config
        self.name = backend.config.name
        ceiling = self.config.max_concurrency
        self.adaptive = (
            AdaptiveLimit(ceiling) if self.config.adaptive and ceiling > 0 else None
        )
        slots = self.adaptive.limit if self.adaptive else ceiling
        self.queue = SlotQueue(
            slots, self.config.max_queue, self.config.queue_timeout_s, clock=clock
        )
        self.stats = BackendStats(clock=clock)
        self.healthy = True
        self.in_flight = 0

    def check_admission(self) -> None:
        """Refuse at once what this backend cannot serve in time."""
        if not self.healthy:
            raise Unavailable(f"backend '{self.name}' is not healthy")
        self.queue.check_admission()

    def observe_service(self, seconds: float, output_tokens: int) -> None:
        """Learn from one served request: ETAs, and the adaptive slot count."""
        self.queue.observe_service(seconds)
        if self.adaptive is not None:
            saturated = (
                self.queue.in_use + 1 >= self.queue.slots or self.queue.waiting > 0
            )
            limit = self.adaptive.observe(seconds, output_tokens, saturated=saturated)
            if limit != self.queue.slots:
                self.queue.resize(limit)

    def snapshot(self) -> BackendSnapshot:
        latency, throughput = self.stats.history()
        return BackendSnapshot(
            name=self.name,
            kind=self.config.kind,
            models=self.config.models,
            healthy=self.healthy,
            in_flight=self.in_flight,
            slots=self.queue.slots,
            max_concurrency=self.config.max_concurrency,
            queued=self.queue.waiting,
            max_queue=self.config.max_queue,
            eta_s=round(self.queue.arrival_eta_s(), 2),
            p50_ms=self.stats.p50_ms(),
            p95_ms=self.stats.p95_ms(),
            success_rate=self.stats.success_rate(),
            completed=self.stats.completed,
            failed=self.stats.failed,
            latency_history=latency,
            throughput_history=throughput,
        )
