"""What this node knows of other nodes, learned from their `GET /v1/network`."""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import httpx

from .config import RemoteConfig
from .types import RemoteSnapshot

log = logging.getLogger(__name__)

POLL_EVERY_S = 15.0
POLL_TIMEOUT_S = 5.0


class RemoteWatcher:
    """Polls every configured remote's network view and keeps the latest answer."""

    def __init__(
        self,
        remotes: Sequence[RemoteConfig],
        *,
        clock: Callable[[], float] = time.time,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self.remotes = tuple(remotes)
        self.clock = clock
        self._state: dict[str, RemoteSnapshot] = {
            r.id: RemoteSnapshot(r.id, r.url, False, None, None, "not polled yet")
            for r in self.remotes
        }
        self._client: httpx.AsyncClient | None = None
        self._transport = transport

    async def run(self) -> None:
        """Poll forever; the node cancels this task when it stops."""
        while True:
            await self.poll_all()
            await asyncio.sleep(POLL_EVERY_S)

    async def poll_all(self) -> None:
        if self._client is None:
            self._client = httpx.AsyncClient(
                timeout=POLL_TIMEOUT_S, transport=self._transport
            )
        await asyncio.gather(*(self._poll(r, self._client) for r in self.remotes))

    async def _poll(self, remote: RemoteConfig, client: httpx.AsyncClient) -> None:
        previous = self._state[remote.id]
        try:
            response = await client.get(f"{remote.url}/v1/network")
            response.raise_for_status()
            body = response.json()
            models = tuple(m for m in body.get("models", []) if isinstance(m, dict))
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            reason = type(exc).__name__
            if isinstance(exc, httpx.HTTPStatusError):
                reason = f"HTTP {exc.response.status_code}"
            if previous.healthy:
                log.warning("remote %s unreachable: %s", remote.id, reason)
            self._state[remote.id] = RemoteSnapshot(
                remote.id,
                remote.url,
                False,
                previous.p50_ms,
                previous.last_seen,
                reason,
                previous.models,
            )
            return
        p50s = [m["p50_ms"] for m in models if isinstance(m.get("p50_ms"), int | float)]
        healthy = any(m.get("healthy") for m in models) if models else True
        self._state[remote.id] = RemoteSnapshot(
            remote.id,
            remote.url,
            healthy,
            statistics.median(p50s) if p50s else None,
            self.clock(),
            None,
            models,
        )

    def snapshots(self) -> tuple[RemoteSnapshot, ...]:
        return tuple(self._state.values())

    def network_entries(self) -> list[dict[str, Any]]:
        """The `peers` list of this node's own `/v1/network`."""
        entries = []
        for snap in self._state.values():
            last_seen = None
            if snap.last_seen is not None:
                moment = datetime.fromtimestamp(snap.last_seen, UTC)
                last_seen = moment.strftime("%Y-%m-%dT%H:%M:%SZ")
            entries.append(
                {
                    "id": snap.id,
                    "url": snap.url,
                    "healthy": snap.healthy,
                    "p50_ms": snap.p50_ms,
                    "last_seen": last_seen,
                }
            )
        return entries

    async def close(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None
