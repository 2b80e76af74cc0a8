"""Prometheus metrics of one node, in a registry of its own."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from .types import BackendSnapshot, RequestRecord

LATENCY_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 40, 60, 90, 120)


class _LiveGauges(Collector):
    """Reads queue depth, slots and in-flight counts at scrape time."""

    def __init__(self, backends: Callable[[], Iterable[BackendSnapshot]]) -> None:
        self._backends = backends

    def collect(self) -> Iterable[Metric]:
        families = {
            "queued": GaugeMetricFamily(
                "meld_queue_depth", "Requests waiting for a slot", labels=["backend"]
            ),
            "in_flight": GaugeMetricFamily(
                "meld_in_flight", "Requests running on the backend", labels=["backend"]
            ),
            "slots": GaugeMetricFamily(
                "meld_slots", "Slots the backend is given now", labels=["backend"]
            ),
            "healthy": GaugeMetricFamily(
                "meld_backend_healthy",
                "1 when the backend is healthy",
                labels=["backend"],
            ),
        }
        for b in self._backends():
            families["queued"].add_metric([b.name], b.queued)
            families["in_flight"].add_metric([b.name], b.in_flight)
            families["slots"].add_metric([b.name], b.slots)
            families["healthy"].add_metric([b.name], 1.0 if b.healthy else 0.0)
        yield from families.values()


class NodeMetrics:
    """Counters and histograms fed by finished requests, plus live gauges."""

    def __init__(self, backends: Callable[[], Iterable[BackendSnapshot]]) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "meld_requests",
            "Chat completions answered, by backend, model and status",
            ["backend", "model", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "meld_request_duration_seconds",
            "Time from arrival to answer of successful chat completions",
            ["backend"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.queued = Histogram(
            "meld_queue_wait_seconds",
            "Time requests waited for a slot",
            ["backend"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.credits = Counter(
            "meld_credits_charged",
            "Credit units charged for settled requests",
            ["model"],
            registry=self.registry,
        )
        self.auth_failures = Counter(
            "meld_unauthorized",
            "Requests refused with 401",
            registry=self.registry,
        )
        self.registry.register(_LiveGauges(backends))

    def observe(self, record: RequestRecord) -> None:
        """Count one finished request."""
        backend = record.backend or "none"
        model = record.model or "none"
        if not record.backend and record.model:
            # No backend routes it: the name is the caller's, and labelling by it
            # would let callers grow the series without bound.
            model = "unknown"
        self.requests.labels(backend, model, str(record.status)).inc()
        if record.status == 200:
            self.latency.labels(backend).observe(record.latency_ms / 1000)
            self.queued.labels(backend).observe(record.queued_ms / 1000)
            self.credits.labels(record.model).inc(record.credits)

    def render(self) -> bytes:
        return generate_latest(self.registry)
