"""The node's HTTP surface (section 3) and the one place errors become answers."""

from __future__ import annotations

import asyncio
import logging
import math
import secrets
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .chat import sse
from .errors import MeldError, MethodNotAllowed, NotFound, PayloadTooLarge, Unauthorized
from .router import Answer, Event, Exchange, Failed, Piece, Queued
from .signing import SignedRequest, parse_signed

if TYPE_CHECKING:
    from .node import Node

log = logging.getLogger(__name__)


class RequestIdMiddleware:
    """Gives every request an id and puts it on every answer, errors included.

    A replayed answer keeps the id it was first sent with.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = "req_" + secrets.token_hex(12)
        scope.setdefault("state", {})["request_id"] = request_id
        header = (b"x-meld-request-id", request_id.encode())

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                if not any(name.lower() == header[0] for name, _ in headers):
                    headers.append(header)
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_id)


def error_response(error: MeldError) -> JSONResponse:
    """The JSON error answer of PROTOCOL section 6."""
    headers = {}
    if error.retry_after_s is not None:
        headers["Retry-After"] = str(max(1, math.ceil(error.retry_after_s)))
    return JSONResponse(error.to_body(), status_code=error.status, headers=headers)


async def _on_meld_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, MeldError)
    if isinstance(exc, Unauthorized):
        node: Node = request.app.state.node
        node.metrics.auth_failures.inc()
        log.info("unauthorized %s %s", request.method, request.url.path)
    return error_response(exc)


async def _on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 405:
        return error_response(MethodNotAllowed(f"{request.method} is not allowed here"))
    return error_response(NotFound(f"no such endpoint: {request.url.path}"))


async def _on_crash(request: Request, exc: Exception) -> Response:
    log.exception("unhandled error on %s", request.url.path)
    return error_response(MeldError("the node failed to handle this request"))


async def read_body(request: Request, limit: int) -> bytes:
    """The whole body, refused with 413 as soon as it passes `limit` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"body over the limit of {limit} bytes")
    parts: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"body over the limit of {limit} bytes")
        parts.append(chunk)
    return b"".join(parts)


def request_target(scope: Scope) -> str:
    """The path and query exactly as the caller sent them, as signed."""
    raw = scope.get("raw_path") or scope["path"].encode()
    target = raw.decode("latin-1")
    query = scope.get("query_string", b"")
    return f"{target}?{query.decode('latin-1')}" if query else target


async def verified_parts(request: Request, limit: int) -> tuple[SignedRequest, bytes]:
    """The body and the checked signature headers; 401 when they are malformed."""
    body = await read_body(request, limit)
    signed = parse_signed(
        request.headers.get, request.method, request_target(request.scope), body
    )
    if signed is None:
        raise Unauthorized()
    return signed, body


async def health(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def network(request: Request) -> Response:
    node: Node = request.app.state.node
    return JSONResponse(node.network_view())


async def metrics(request: Request) -> Response:
    node: Node = request.app.state.node
    return Response(node.metrics.render(), media_type="text/plain; version=0.0.4")


async def models(request: Request) -> Response:
    node: Node = request.app.state.node
    signed, _ = await verified_parts(request, node.config.node.max_body_bytes)
    await node.ledger.admit(signed, request_id=request.state.request_id)
    created = int(node.started_at)
    data = [
        {"id": m, "object": "model", "created": created, "owned_by": b.name}
        for b in node.config.backends
        for m in b.models
    ]
    return JSONResponse({"object": "list", "data": data})


async def credits(request: Request) -> Response:
    node: Node = request.app.state.node
    signed, _ = await verified_parts(request, node.config.node.max_body_bytes)
    admission = await node.ledger.admit(signed, request_id=request.state.request_id)
    balance = await node.ledger.balance(admission.peer)
    recent = await node.ledger.transfers(admission.peer, limit=20)
    return JSONResponse(
        {
            "peer": admission.peer,
            "balance": balance.balance,
            "held": balance.held,
            "available": balance.available,
            "recent": [t.as_json() for t in recent],
        }
    )


async def chat_completions(request: Request) -> Response:
    node: Node = request.app.state.node
    signed, body = await verified_parts(request, node.config.node.max_body_bytes)
    request_id: str = request.state.request_id
    key = request.headers.get("idempotency-key") or None
    exchange = node.router.open(signed, body, request_id, key)

    first = await _first_event(request, exchange)
    if first is None:
        return Response(status_code=499)
    if isinstance(first, Failed):
        raise first.error
    if isinstance(first, Answer):
        return Response(
            first.body, first.status, first.headers, media_type=first.content_type
        )
    position = first.position if isinstance(first, Queued) else 0
    headers = {
        "Cache-Control": "no-cache",
        "X-Accel-Buffering": "no",
        "X-Meld-Queue-Position": str(position),
    }
    return StreamingResponse(
        _relay(exchange, first), media_type="text/event-stream", headers=headers
    )


async def _first_event(request: Request, exchange: Exchange) -> Event | None:
    """The exchange's first event, or None when the caller left before it came."""
    getting = asyncio.ensure_future(exchange.events.get())
    leaving = asyncio.ensure_future(_disconnected(request.receive))
    try:
        done, _ = await asyncio.wait(
            {getting, leaving}, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        leaving.cancel()
    if getting in done:
        return getting.result()
    getting.cancel()
    exchange.cancel()
    return None


async def _disconnected(receive: Receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


async def _relay(exchange: Exchange, first: Event) -> AsyncIterator[bytes]:
    """The server-sent events of a streaming answer; a caller who leaves cancels it."""
    event = first
    try:
        while True:
            if isinstance(event, Queued):
                data: dict[str, Any] = {
                    "position": event.position,
                    "eta_s": event.eta_s,
                }
                yield sse(data, event="meld.queue")
            elif isinstance(event, Piece):
                yield event.data
            elif isinstance(event, Answer):
                yield event.body
                return
            else:
                # Headers are gone: the error travels as an event, and no [DONE].
                yield sse(event.error.to_body(), event="meld.error")
                return
            event = await exchange.events.get()
    finally:
        exchange.cancel()


def create_app(node: Node) -> Starlette:
    """The node's ASGI application."""
    routes = [
        Route("/v1/health", health, methods=["GET"]),
        Route("/v1/network", network, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/v1/credits", credits, methods=["GET"]),
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={
            MeldError: _on_meld_error,
            HTTPException: _on_http_error,
            Exception: _on_crash,
        },
    )
    app.state.node = node
    wrapped: Any = RequestIdMiddleware(app)
    return wrapped  # type: ignore[no-any-return]
