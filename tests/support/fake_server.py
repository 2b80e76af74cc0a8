"""A fake HTTP server for tests: an ASGI app served by uvicorn on 127.0.0.1, on a
thread and event loop of its own, recording what it receives."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Self

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

START_TIMEOUT_S = 10.0


@dataclass(frozen=True)
class Received:
    """One request as the fake upstream saw it."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any
    client_port: int


class DropConnection(Exception):
    """Raised inside a response so uvicorn closes the socket mid-response."""


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not (record.exc_info and isinstance(record.exc_info[1], DropConnection))


logging.getLogger("uvicorn.error").addFilter(_QuietDrops())


class FakeUpstream:
    """An ASGI app served by uvicorn on 127.0.0.1, on its own thread and loop."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.disconnects = 0
        self._changed = threading.Condition()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.stopping: asyncio.Event | None = None
        self.port = 0

    def app(self) -> Starlette:
        """The application to serve; subclasses define their routes here."""
        raise NotImplementedError

    @property
    def root(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def count(self) -> int:
        return len(self.requests)

    @property
    def last(self) -> Received:
        return self.requests[-1]

    def reset(self) -> None:
        """Forget the requests and disconnects seen so far (for a shared server)."""
        with self._changed:
            self.requests.clear()
            self.disconnects = 0

    def start(self) -> Self:
        """Serve on a free port; returns once the server accepts connections."""
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # Without it each small response write waits out the client's delayed ACK.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(
            self.app(),
            log_config=None,
            lifespan="off",
            ws="none",
            timeout_graceful_shutdown=2,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, args=(sock,), daemon=True)
        self._thread.start()
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"{type(self).__name__} did not start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Release every hanging response, then shut the server down."""
        if self._server is None or self._thread is None:
            return
        if self._loop is not None and self.stopping is not None:
            self._loop.call_soon_threadsafe(self.stopping.set)
        self._server.should_exit = True
        self._thread.join(START_TIMEOUT_S)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.to_thread(self.stop)

    def wait_for(
        self, *, requests: int = 0, disconnects: int = 0, timeout: float = 5.0
    ) -> None:
        """Block until the counts are reached; AssertionError after `timeout`."""
        with self._changed:
            reached = self._changed.wait_for(
                lambda: self.count >= requests and self.disconnects >= disconnects,
                timeout,
            )
        if not reached:
            raise AssertionError(
                f"wanted {requests} requests and {disconnects} disconnects, "
                f"saw {self.count} and {self.disconnects}"
            )

    async def await_for(self, **counts: Any) -> None:
        """`wait_for` without blocking the calling event loop."""
        await asyncio.to_thread(lambda: self.wait_for(**counts))

    def _run(self, sock: socket.socket) -> None:
        asyncio.run(self._serve(sock))

    async def _serve(self, sock: socket.socket) -> None:
        self._loop = asyncio.get_running_loop()
        self.stopping = asyncio.Event()
        assert self._server is not None
        await self._server.serve(sockets=[sock])

    async def record(self, request: Request) -> Any:
        """Remember a request and return its body, parsed when it is JSON."""
        raw = await request.body()
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        port = request.client.port if request.client else 0
        headers = dict(request.headers)
        received = Received(request.method, request.url.path, headers, body, port)
        with self._changed:
            self.requests.append(received)
            self._changed.notify_all()
        return body

    def record_disconnect(self) -> None:
        """Count a client that went away before its response was complete."""
        with self._changed:
            self.disconnects += 1
            self._changed.notify_all()

    async def pause(self, seconds: float) -> None:
        """Sleep as a slow upstream would, cut short when the server stops."""
        assert self.stopping is not None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)


class WireResponse(Response):
    """A response written piece by piece that notices the client going away."""

    def __init__(
        self,
        fake: FakeUpstream,
        pieces: AsyncIterator[bytes],
        *,
        status: int | None = 200,
        media_type: str = "text/event-stream",
        content_length: int | None = None,
    ) -> None:
        self.fake = fake
        self.pieces = pieces
        self.wire_status = status
        self.wire_headers = [(b"content-type", media_type.encode())]
        if content_length is not None:
            self.wire_headers.append((b"content-length", str(content_length).encode()))

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        finished = False

        async def write() -> None:
            nonlocal finished
            if self.wire_status is not None:
                start = {"status": self.wire_status, "headers": self.wire_headers}
                await send({"type": "http.response.start", **start})
            async for piece in self.pieces:
                await send(
                    {"type": "http.response.body", "body": piece, "more_body": True}
                )
            finished = True
            await send({"type": "http.response.body", "body": b""})

        async def watch() -> None:
            while (await receive())["type"] != "http.disconnect":
                pass
            if not finished:
                self.fake.record_disconnect()

        assert self.fake.stopping is not None
        tasks = [
            asyncio.ensure_future(write()),
            asyncio.ensure_future(watch()),
            asyncio.ensure_future(self.fake.stopping.wait()),
        ]
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in tasks:
                task.cancel()
        if tasks[0] in done:
            tasks[0].result()
        elif not finished:
            raise DropConnection()


async def forever() -> AsyncIterator[bytes]:
    """A body that never sends a byte."""
    await asyncio.Event().wait()
    yield b""


async def then_drop(pieces: list[bytes]) -> AsyncIterator[bytes]:
    """A body that sends `pieces`, then closes the socket mid-response."""
    for piece in pieces:
        yield piece
    raise DropConnection()
