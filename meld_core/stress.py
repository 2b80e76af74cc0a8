"""Stress runs: signed chat requests at rising concurrency levels, with percentiles."""

from __future__ import annotations

import asyncio
import json
import logging
import math
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from .config import Config
from .errors import InvalidRequest, PeerError, Unavailable
from .signing import SECRET_PATTERN, MeldAuth

log = logging.getLogger(__name__)

MAX_LEVEL = 1000
MAX_REQUESTS_PER_LEVEL = 100_000
CHAT_PATH = "/v1/chat/completions"


@dataclass(frozen=True, slots=True)
class RequestOutcome:
    """One stress request: how it ended, how long it took, where it queued.

    `status` is the HTTP status, or for a request that got no answer the kind of
    transport failure (`timeout`, `connect_error`, `protocol_error`).
    """

    level: int
    index: int
    status: int | str
    latency_ms: float
    queue_position: int | None = None
    error_type: str | None = None
    ttft_ms: float | None = None

    @property
    def ok(self) -> bool:
        return self.status == 200 and self.error_type is None


@dataclass(frozen=True, slots=True)
class StressResult:
    """The summary of one concurrency level; latencies are of successful requests."""

    level: int
    sent: int
    ok: int
    failed: int
    by_status: tuple[tuple[int | str, int], ...]
    p50_ms: float | None
    p95_ms: float | None
    p99_ms: float | None
    max_ms: float | None
    duration_s: float
    throughput_rps: float
    queue_positions_seen: int
    error_types: tuple[tuple[str, int], ...]
    ttft_p50_ms: float | None = None

    def as_json(self) -> dict[str, Any]:
        """A JSON-ready dict; status codes become string keys."""
        return {
            "level": self.level,
            "sent": self.sent,
            "ok": self.ok,
            "failed": self.failed,
            "by_status": {str(k): v for k, v in self.by_status},
            "p50_ms": self.p50_ms,
            "p95_ms": self.p95_ms,
            "p99_ms": self.p99_ms,
            "max_ms": self.max_ms,
            "ttft_p50_ms": self.ttft_p50_ms,
            "duration_s": round(self.duration_s, 3),
            "throughput_rps": round(self.throughput_rps, 3),
            "queue_positions_seen": self.queue_positions_seen,
            "error_types": dict(self.error_types),
        }


def node_url(config: Config) -> str:
    """The URL at which this configuration's node answers on this machine."""
    host = config.node.host
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{config.node.port}"


def console_credentials(config: Config) -> tuple[str, str]:
    """The node's own console peer and its secret, read from the data directory."""
    path = config.console_secret_path
    try:
        secret = path.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        raise PeerError(
            f"{path}: no console secret yet; start the node once to create it"
        ) from None
    except OSError as exc:
        raise PeerError(f"{path}: cannot read: {exc.strerror}") from None
    if not SECRET_PATTERN.fullmatch(secret):
        raise PeerError(f"{path}: does not hold a peer secret")
    return config.console_peer, secret


def percentile(values: Sequence[float], pct: float) -> float | None:
    """The nearest-rank percentile of `values`, or None when there are none."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(pct / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(
    level: int, outcomes: Sequence[RequestOutcome], duration_s: float
) -> StressResult:
    """The StressResult of one level's outcomes."""
    latencies = [o.latency_ms for o in outcomes if o.ok]
    ttfts = [o.ttft_ms for o in outcomes if o.ok and o.ttft_ms is not None]
    statuses = Counter(o.status for o in outcomes)
    errors = Counter(o.error_type for o in outcomes if o.error_type is not None)
    positions = [o.queue_position for o in outcomes if o.queue_position is not None]
    return StressResult(
        level=level,
        sent=len(outcomes),
        ok=len(latencies),
        failed=len(outcomes) - len(latencies),
        by_status=tuple(sorted(statuses.items(), key=lambda kv: str(kv[0]))),
        p50_ms=percentile(latencies, 50),
        p95_ms=percentile(latencies, 95),
        p99_ms=percentile(latencies, 99),
        max_ms=max(latencies) if latencies else None,
        duration_s=duration_s,
        throughput_rps=len(latencies) / duration_s if duration_s > 0 else 0.0,
        queue_positions_seen=max(positions, default=0),
        error_types=tuple(sorted(errors.items())),
        ttft_p50_ms=percentile(ttfts, 50),
    )


async def probe(
    url: str,
    *,
    transport: httpx.AsyncBaseTransport | None = None,
    timeout_s: float = 5.0,
) -> None:
    """Raise Unavailable unless the node at `url` answers its health check."""
    try:
        async with httpx.AsyncClient(transport=transport, timeout=timeout_s) as client:
            response = await client.get(url.rstrip("/") + "/v1/health")
    except httpx.HTTPError as exc:
        raise Unavailable(f"{url} does not answer ({_failure(exc)})") from None
    if response.status_code != 200:
        raise Unavailable(
            f"{url} answered its health check with {response.status_code}"
        )


async def run_stress(
    url: str,
    peer: str,
    secret: str,
    model: str,
    levels: Sequence[int],
    *,
    requests_per_level: int | None = None,
    stream: bool = False,
    max_tokens: int = 64,
    timeout_s: float = 300,
    on_result: Callable[[int, RequestOutcome], None] | None = None,
    on_level: Callable[[StressResult], None] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> list[StressResult]:
    """Run each level in turn: `requests_per_level` requests, `level` at a time.

    Args:
        requests_per_level: requests per level; by default as many as the level.
        timeout_s: the most any one request may take, so a run's time is bounded.
        on_result: called with each request's outcome as it finishes.
        on_level: called with each level's summary as it finishes.
    """
    _check_plan(levels, requests_per_level, max_tokens, timeout_s)

    results: list[StressResult] = []
    widest = max(levels)
    async with httpx.AsyncClient(
        base_url=url.rstrip("/"),
        auth=MeldAuth(peer, secret),
        timeout=timeout_s,
        limits=httpx.Limits(max_connections=widest, max_keepalive_connections=widest),
        transport=transport,
    ) as client:
        body = {"model": model, "max_tokens": max_tokens, "stream": stream}
        for level in levels:
            count = requests_per_level or level
            log.info("stress level %s: %s requests to %s", level, count, url)
            result = await _run_level(client, level, count, body, on_result)
            log.info(
                "stress level %s: %s ok, %s failed, p50 %s ms",
                level,
                result.ok,
                result.failed,
                format_ms(result.p50_ms),
            )
            results.append(result)
            if on_level is not None:
                on_level(result)
    return results


def _check_plan(
    levels: Sequence[int],
    requests_per_level: int | None,
    max_tokens: int,
    timeout_s: float,
) -> None:
    if not levels:
        raise InvalidRequest("a stress run needs at least one level")
    if any(not 1 <= level <= MAX_LEVEL for level in levels):
        raise InvalidRequest(f"levels must be whole numbers from 1 to {MAX_LEVEL}")
    if requests_per_level is not None and not (
        1 <= requests_per_level <= MAX_REQUESTS_PER_LEVEL
    ):
        raise InvalidRequest(
            f"requests per level must be from 1 to {MAX_REQUESTS_PER_LEVEL}"
        )
    if max_tokens < 1 or timeout_s <= 0:
        raise InvalidRequest("max_tokens and timeout_s must be positive")


async def _run_level(
    client: httpx.AsyncClient,
    level: int,
    count: int,
    body: dict[str, Any],
    on_result: Callable[[int, RequestOutcome], None] | None,
) -> StressResult:
    outcomes: list[RequestOutcome] = []
    indices: Iterator[int] = iter(range(count))

    async def worker() -> None:
        # Workers share one iterator, so exactly `count` requests go out and never
        # more than `level` of them at once.
        for index in indices:
            outcome = await _one_request(client, level, index, body)
            outcomes.append(outcome)
            if on_result is not None:
                on_result(level, outcome)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(min(level, count))))
    return summarize(level, outcomes, time.perf_counter() - started)


async def _one_request(
    client: httpx.AsyncClient, level: int, index: int, body: dict[str, Any]
) -> RequestOutcome:
    prompt = f"Stress request {index + 1} at level {level}. Answer in one sentence."
    payload = {**body, "messages": [{"role": "user", "content": prompt}]}
    started = time.perf_counter()
    try:
        if payload["stream"]:
            return await _streamed(client, level, index, payload, started)
        response = await client.post(CHAT_PATH, json=payload)
    except httpx.HTTPError as exc:
        elapsed = _ms_since(started)
        return RequestOutcome(
            level, index, _failure(exc), elapsed, error_type=_failure(exc)
        )

    elapsed = _ms_since(started)
    position = _int_header(response, "X-Meld-Queue-Position")
    if response.status_code != 200:
        kind = _error_type(response.content, response.status_code)
        return RequestOutcome(
            level, index, response.status_code, elapsed, position, kind
        )
    error = None if _is_completion(response.content) else "bad_response"
    return RequestOutcome(level, index, 200, elapsed, position, error)


async def _streamed(
    client: httpx.AsyncClient,
    level: int,
    index: int,
    payload: dict[str, Any],
    started: float,
) -> RequestOutcome:
    async with client.stream("POST", CHAT_PATH, json=payload) as response:
        position = _int_header(response, "X-Meld-Queue-Position")
        if response.status_code != 200:
            kind = _error_type(await response.aread(), response.status_code)
            elapsed = _ms_since(started)
            return RequestOutcome(
                level, index, response.status_code, elapsed, position, kind
            )
        events = _SseReader()
        async for line in response.aiter_lines():
            events.feed(line, _ms_since(started))
            if events.done:
                break
    if events.max_position:
        position = max(position or 0, events.max_position)
    error = events.error or (None if events.done else "incomplete_stream")
    return RequestOutcome(
        level, index, 200, _ms_since(started), position, error, events.ttft_ms
    )


class _SseReader:
    """Follows a MELD event stream: queue positions, first token, errors, the end."""

    def __init__(self) -> None:
        self.event = "message"
        self.max_position = 0
        self.ttft_ms: float | None = None
        self.error: str | None = None
        self.done = False

    def feed(self, line: str, elapsed_ms: float) -> None:
        if not line:
            self.event = "message"
        elif line.startswith("event:"):
            self.event = line[6:].strip()
        elif line.startswith("data:"):
            self._data(line[5:].strip(), elapsed_ms)

    def _data(self, data: str, elapsed_ms: float) -> None:
        if data == "[DONE]":
            self.done = True
            return
        try:
            value = json.loads(data)
        except ValueError:
            self.error = self.error or "bad_response"
            return
        if not isinstance(value, dict):
            return
        if self.event == "meld.queue":
            position = value.get("position")
            if isinstance(position, int):
                self.max_position = max(self.max_position, position)
        elif "error" in value:
            self.error = self.error or _error_from_json(value) or "upstream_error"
        elif self.event == "message" and self.ttft_ms is None and value.get("choices"):
            self.ttft_ms = elapsed_ms


def _ms_since(started: float) -> float:
    return (time.perf_counter() - started) * 1000


def _failure(exc: httpx.HTTPError) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timeout"
    if isinstance(exc, httpx.ConnectError):
        return "connect_error"
    if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
        return "protocol_error"
    return "transport_error"


def _int_header(response: httpx.Response, name: str) -> int | None:
    value = response.headers.get(name, "")
    return int(value) if value.isdigit() else None


def _error_from_json(value: Any) -> str | None:
    if isinstance(value, dict) and isinstance(value.get("error"), dict):
        kind = value["error"].get("type")
        return kind if isinstance(kind, str) else None
    return None


def _error_type(content: bytes, status: int) -> str:
    try:
        value = json.loads(content)
    except ValueError:
        value = None
    return _error_from_json(value) or f"http_{status}"


def _is_completion(content: bytes) -> bool:
    try:
        value = json.loads(content)
    except ValueError:
        return False
    return isinstance(value, dict) and bool(value.get("choices"))


def render_markdown(results: Sequence[StressResult], *, target: str, model: str) -> str:
    """A Markdown report of a stress run: one table row per level."""
    lines = [
        "# MELD stress run",
        "",
        f"- target: `{target}`",
        f"- model: `{model}`",
        "- latencies are of successful requests, in milliseconds",
        "",
        "| level | sent | ok | failed | p50 | p95 | p99 | max | ok/s | max queue "
        "position | statuses | errors |",
        "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- "
        "| --- |",
    ]
    for r in results:
        cells = [
            str(r.level),
            str(r.sent),
            str(r.ok),
            str(r.failed),
            format_ms(r.p50_ms),
            format_ms(r.p95_ms),
            format_ms(r.p99_ms),
            format_ms(r.max_ms),
            f"{r.throughput_rps:.2f}",
            str(r.queue_positions_seen),
            format_counts(r.by_status),
            format_counts(r.error_types) or "-",
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def format_ms(value: float | None) -> str:
    """A latency for a table: whole milliseconds, or `-` when there is none."""
    return "-" if value is None else f"{value:.0f}"


def format_counts(counts: Sequence[tuple[int | str, int]]) -> str:
    """Counts as `key: n` pairs, for a table cell."""
    return ", ".join(f"{key}: {n}" for key, n in counts)
