"""Frozen values that cross the core's boundary: snapshots, records and events."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True, slots=True)
class Balance:
    """A peer's money: `available` is `balance` less what is `held`."""

    peer: str
    balance: int
    held: int

    @property
    def available(self) -> int:
        return self.balance - self.held


@dataclass(frozen=True, slots=True)
class Transfer:
    """One immutable double-entry movement between two accounts."""

    id: int
    kind: str
    source: str
    dest: str
    amount: int
    reason: str
    actor: str
    at: float
    hold_id: int | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "amount": self.amount,
            "reason": self.reason,
            "at": self.at,
        }


@dataclass(frozen=True, slots=True)
class PeerRecord:
    """A peer as the ledger knows it, with its money and limits; never its secret."""

    id: str
    enabled: bool
    balance: int
    held: int
    created_at: float
    last_seen: float | None
    requests_1h: int
    requests_per_minute: int | None = None
    max_in_flight: int | None = None

    @property
    def available(self) -> int:
        return self.balance - self.held


@dataclass(frozen=True, slots=True)
class Admission:
    """What the ledger granted a verified request: its peer and, if any, its hold."""

    peer: str
    hold_id: int | None
    held: int
    balance: int
    replay: tuple[int, str, bytes] | None = None
    """An Idempotency-Key's stored answer (status, content type, body) to send again."""


@dataclass(frozen=True, slots=True)
class RequestRecord:
    """One answered request, for the request log and the console."""

    request_id: str
    peer: str
    model: str
    backend: str
    status: int
    error_type: str | None
    queued_ms: float
    latency_ms: float
    input_tokens: int
    output_tokens: int
    credits: int
    at: float
    stream: bool = False


@dataclass(frozen=True, slots=True)
class BackendSnapshot:
    """One backend's live state."""

    name: str
    kind: str
    models: tuple[str, ...]
    healthy: bool
    in_flight: int
    slots: int
    max_concurrency: int
    queued: int
    max_queue: int
    eta_s: float
    p50_ms: float | None
    p95_ms: float | None
    success_rate: float | None
    completed: int
    failed: int
    latency_history: tuple[float, ...] = ()
    throughput_history: tuple[float, ...] = ()


@dataclass(frozen=True, slots=True)
class RemoteSnapshot:
    """What this node last learned of another node from its `/v1/network`."""

    id: str
    url: str
    healthy: bool
    p50_ms: float | None
    last_seen: float | None
    error: str | None = None
    models: tuple[dict[str, Any], ...] = ()


@dataclass(frozen=True, slots=True)
class NodeSnapshot:
    """The whole node at one moment, as the console renders it."""

    node_id: str
    version: str
    listen: str
    taken_at: float
    uptime_s: float
    requests_per_s: float
    success_rate: float | None
    in_flight: int
    queued: int
    backends: tuple[BackendSnapshot, ...]
    recent: tuple[RequestRecord, ...]
    remotes: tuple[RemoteSnapshot, ...] = field(default=())
