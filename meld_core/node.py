"""The MELD node: ledger, backends, router and HTTP server, in any event loop."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn

from . import __version__
from .backends import create_backend
from .backends.base import Backend
from .config import Config
from .errors import StartError
from .ledger import Ledger
from .metrics import NodeMetrics
from .node_lock import NodeLock
from .remotes import RemoteWatcher
from .router import Router
from .server import create_app
from .signing import new_secret
from .types import NodeSnapshot, PeerRecord, RequestRecord, Transfer

log = logging.getLogger(__name__)

CONSOLE_CREDITS = 10_000_000
# The console's stress panel measures the node's queue, not the node's limits on
# peers: its own peer may have as many requests in flight as a stress level allows.
CONSOLE_LIMITS = {"requests_per_minute": 100_000, "max_in_flight": 1000}
HEALTH_EVERY_S = 10.0
SWEEP_EVERY_S = 15.0
PRUNE_EVERY_S = 600.0
RATE_WINDOW_S = 10.0
RECENT_REQUESTS = 50
GRACE_S = 10


class _Server(uvicorn.Server):
    """uvicorn without signal handlers: the program embedding the node owns them."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class Node:
    """One MELD node. Start it inside a running event loop; stop it to free all."""

    def __init__(
        self,
        config: Config,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.clock = clock
        self.wall_clock = wall_clock
        self.console_peer = config.console_peer
        self.console_secret = ""
        self.started_at = wall_clock()
        self._started_mono = clock()
        self._lock = NodeLock(config.db_path)
        self._ledger: Ledger | None = None
        self._router: Router | None = None
        self.backends: dict[str, Backend] = {}
        self.metrics = NodeMetrics(self._backend_snapshots)
        self.remotes = RemoteWatcher(config.remotes, clock=wall_clock)
        self._server: _Server | None = None
        self._serve_task: asyncio.Task[None] | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._recent: deque[RequestRecord] = deque(maxlen=RECENT_REQUESTS)
        self._finished_at: deque[float] = deque()
        self._outcomes: deque[bool] = deque(maxlen=256)
        self._subscribers: list[asyncio.Queue[RequestRecord]] = []
        self._stopped = asyncio.Event()
        self.url = ""

    @property
    def ledger(self) -> Ledger:
        if self._ledger is None:
            raise RuntimeError("the node is not started")
        return self._ledger

    @property
    def router(self) -> Router:
        if self._router is None:
            raise RuntimeError("the node is not started")
        return self._router

    async def start(self) -> None:
        """Open the ledger, free holds a crash left, start backends, then serve.

        Raises StartError when another node serves from the same ledger or the
        address is taken; whatever was opened by then is closed again.
        """
        self.config.node.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._lock.acquire()
        try:
            await self._open_parts()
            await self._serve()
        except BaseException:
            await self._close_parts()
            raise
        self._tasks = [
            asyncio.create_task(self._every(HEALTH_EVERY_S, self._probe_health)),
            asyncio.create_task(self._every(SWEEP_EVERY_S, self._sweep)),
            asyncio.create_task(self._every(PRUNE_EVERY_S, self.ledger.prune)),
        ]
        if self.config.remotes:
            self._tasks.append(asyncio.create_task(self.remotes.run()))
        log.info("node %s serving on %s", self.config.node.id, self.url)

    async def _open_parts(self) -> None:
        self._ledger = await Ledger.open(self.config.db_path)
        released = await self._ledger.release_stale_holds()
        if released:
            log.warning("released %s holds left by an earlier run", released)
        self.console_secret = await self._ensure_console_peer()

        for backend_config in self.config.backends:
            backend = create_backend(backend_config)
            await backend.start()
            self.backends[backend_config.name] = backend
        self._router = Router(
            self.config,
            self._ledger,
            self.backends,
            on_finished=self._finished,
            clock=self.clock,
            wall_clock=self.wall_clock,
        )

    async def _serve(self) -> None:
        settings = self.config.node
        family = socket.AF_INET6 if ":" in settings.host else socket.AF_INET
        # Naming the protocol matters: asyncio turns on TCP_NODELAY for accepted
        # connections only when it is IPPROTO_TCP, and without it every answer on a
        # kept-alive connection waits out the caller's delayed ACK (about 40 ms).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((settings.host, settings.port))
        except OSError as exc:
            sock.close()
            raise StartError(
                f"cannot listen on {settings.listen}: {exc.strerror}"
            ) from None
        sock.listen(2048)
        sock.setblocking(False)
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if family == socket.AF_INET6 else host
        self.url = f"http://{shown}:{port}"

        uv_config = uvicorn.Config(
            create_app(self),
            log_config=None,
            access_log=False,
            lifespan="off",
            loop="none",
            server_header=False,
            # The node reads no client address, so X-Forwarded-* buys nothing.
            proxy_headers=False,
            timeout_keep_alive=30,
            timeout_graceful_shutdown=GRACE_S,
            backlog=2048,
        )
        uv_config.load()
        server = self._server = _Server(uv_config)
        server.lifespan = uv_config.lifespan_class(uv_config)
        await server.startup(sockets=[sock])
        if not server.started:
            sock.close()
            raise StartError(f"cannot serve on {settings.listen}")

        async def run() -> None:
            await server.main_loop()
            await server.shutdown(sockets=[sock])

        self._serve_task = asyncio.create_task(run())

    async def stop(self) -> None:
        """Stop serving; requests still running after the grace period are cancelled."""
        if self._stopped.is_set():
            return
        if self._server is not None and self._serve_task is not None:
            self._server.should_exit = True
            with contextlib.suppress(asyncio.CancelledError):
                await self._serve_task
        if self._router is not None:
            exchanges = list(self._router.exchanges)
            for exchange in exchanges:
                exchange.cancel()
            tasks = [e.task for e in exchanges if e.task is not None]
            await asyncio.gather(*tasks, return_exceptions=True)
            await self._router.drain()
        await self._close_parts()
        self._stopped.set()
        log.info("node %s stopped", self.config.node.id)

    async def _close_parts(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.remotes.close()
        for backend in self.backends.values():
            await backend.close()
        if self._ledger is not None:
            await self._ledger.close()
        self._lock.release()

    async def wait_stopped(self) -> None:
        await self._stopped.wait()

    async def _ensure_console_peer(self) -> str:
        """The console's own peer and its secret, kept in a 0600 file."""
        path = self.config.console_secret_path
        peer = self.console_peer
        known = {p.id for p in await self.ledger.peers()}
        if peer in known and path.exists():
            return path.read_text(encoding="utf-8").strip()
        secret = new_secret()
        if peer in known:
            await self.ledger.rotate_peer(peer, secret, grace_s=0, actor="node")
        else:
            await self.ledger.add_peer(
                peer, secret, credits=CONSOLE_CREDITS, actor="node", **CONSOLE_LIMITS
            )
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(secret + "\n")
        return secret

    def _finished(self, record: RequestRecord) -> None:
        # Successes are counted, not logged one by one: at a thousand a second
        # a line each would cost more than the request.
        level = logging.DEBUG if record.status == 200 else logging.INFO
        log.log(
            level,
            "request %s peer=%s backend=%s model=%s status=%s error=%s"
            " queued_ms=%.0f latency_ms=%.0f credits=%s",
            record.request_id,
            record.peer,
            record.backend or "-",
            record.model or "-",
            record.status,
            record.error_type or "-",
            record.queued_ms,
            record.latency_ms,
            record.credits,
        )
        self._recent.appendleft(record)
        self._finished_at.append(self.clock())
        self._outcomes.append(record.status == 200)
        self.metrics.observe(record)
        for queue in self._subscribers:
            with contextlib.suppress(asyncio.QueueFull):
                queue.put_nowait(record)

    def subscribe(self) -> asyncio.Queue[RequestRecord]:
        """A queue that receives every finished request from now on."""
        queue: asyncio.Queue[RequestRecord] = asyncio.Queue(maxsize=1000)
        self._subscribers.append(queue)
        return queue

    def unsubscribe(self, queue: asyncio.Queue[RequestRecord]) -> None:
        with contextlib.suppress(ValueError):
            self._subscribers.remove(queue)

    def _backend_snapshots(self) -> list[Any]:
        if self._router is None:
            return []
        return [route.snapshot() for route in self._router.routes.values()]

    def snapshot(self) -> NodeSnapshot:
        """The node's live state; cheap enough to call a few times a second."""
        now = self.clock()
        while self._finished_at and self._finished_at[0] < now - RATE_WINDOW_S:
            self._finished_at.popleft()
        window = min(RATE_WINDOW_S, max(1.0, now - self._started_mono))
        backends = tuple(self._backend_snapshots())
        success = sum(self._outcomes) / len(self._outcomes) if self._outcomes else None
        return NodeSnapshot(
            node_id=self.config.node.id,
            version=__version__,
            listen=self.url.removeprefix("http://") or self.config.node.listen,
            taken_at=self.wall_clock(),
            uptime_s=now - self._started_mono,
            requests_per_s=len(self._finished_at) / window,
            success_rate=success,
            in_flight=sum(b.in_flight for b in backends),
            queued=sum(b.queued for b in backends),
            backends=backends,
            recent=tuple(self._recent),
            remotes=self.remotes.snapshots(),
        )

    def network_view(self) -> dict[str, Any]:
        """The body of `GET /v1/network`."""
        snap = self.snapshot()
        models = [
            {
                "id": model,
                "backend": b.name,
                "healthy": b.healthy,
                "in_flight": b.in_flight,
                "queued": b.queued,
                "max_concurrency": b.max_concurrency,
                "slots": b.slots,
                "p50_ms": b.p50_ms,
                "eta_s": b.eta_s,
            }
            for b in snap.backends
            for model in b.models
        ]
        return {
            "node": {
                "id": snap.node_id,
                "version": snap.version,
                "uptime_s": round(snap.uptime_s, 1),
            },
            "models": models,
            "peers": self.remotes.network_entries(),
        }

    async def _every(self, seconds: float, job: Callable[[], Any]) -> None:
        while True:
            await asyncio.sleep(seconds)
            try:
                await job()
            except Exception:
                log.exception("periodic job %s failed", getattr(job, "__name__", job))

    async def _probe_health(self) -> None:
        for route in self.router.routes.values():
            healthy = await route.backend.health()
            if healthy != route.healthy:
                log.warning(
                    "backend %s is now %s",
                    route.name,
                    "healthy" if healthy else "unhealthy",
                )
            route.healthy = healthy

    async def _sweep(self) -> None:
        expired = await self.ledger.release_expired_holds()
        if expired:
            log.warning("released %s expired holds", expired)

    async def add_peer(
        self, peer_id: str, *, credits: int = 0, actor: str = "console"
    ) -> tuple[PeerRecord, str]:
        """Register a peer; returns it and its secret, which is shown only this once."""
        secret = new_secret()
        record = await self.ledger.add_peer(
            peer_id, secret, credits=credits, actor=actor
        )
        return record, secret

    async def rotate_peer(self, peer_id: str, *, actor: str = "console") -> str:
        secret = new_secret()
        await self.ledger.rotate_peer(peer_id, secret, actor=actor)
        return secret

    async def set_peer_enabled(
        self, peer_id: str, enabled: bool, *, actor: str = "console"
    ) -> None:
        await self.ledger.set_peer_enabled(peer_id, enabled, actor=actor)

    async def grant(
        self, peer_id: str, amount: int, *, reason: str, actor: str = "console"
    ) -> Transfer:
        return await self.ledger.grant(peer_id, amount, reason=reason, actor=actor)

    async def deduct(
        self, peer_id: str, amount: int, *, reason: str, actor: str = "console"
    ) -> Transfer:
        return await self.ledger.deduct(peer_id, amount, reason=reason, actor=actor)

    async def peers(self) -> list[PeerRecord]:
        return await self.ledger.peers()

    async def statement(self, peer_id: str, *, limit: int = 50) -> list[Transfer]:
        return await self.ledger.transfers(peer_id, limit=limit)
