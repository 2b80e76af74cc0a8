"""The HTTP client the HTTP backends share, and plain words for its failures."""

from __future__ import annotations

import functools
import logging
import os

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport, HttpxAiohttpClient

log = logging.getLogger(__name__)

TRANSPORT_ENV = "MELD_HTTP_TRANSPORT"
# Connections beyond the backend's slots, so a health probe never waits for one.
SPARE_CONNECTIONS = 2
KEEPALIVE_S = 30.0

# Everything a request on either transport can raise for a network or protocol
# failure; aiohttp errors the adapter does not translate come through as is.
TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    httpx.HTTPError,
    aiohttp.ClientError,
    OSError,
)


def make_client(max_concurrency: int) -> httpx.AsyncClient:
    """An HTTP client pooling keep-alive connections for `max_concurrency` requests.

    `MELD_HTTP_TRANSPORT=httpx` swaps the aiohttp transport for httpx's own pool,
    which is slower under concurrency but has no second HTTP stack in it. The
    client sets no timeouts: the backends enforce `request_timeout_s` themselves.
    """
    pool = max_concurrency + SPARE_CONNECTIONS if max_concurrency > 0 else None
    choice = os.environ.get(TRANSPORT_ENV, "aiohttp")
    if choice == "httpx":
        limits = httpx.Limits(
            max_connections=pool,
            max_keepalive_connections=pool,
            keepalive_expiry=KEEPALIVE_S,
        )
        return httpx.AsyncClient(limits=limits, timeout=None)
    if choice != "aiohttp":
        log.warning("unknown %s=%s; using aiohttp", TRANSPORT_ENV, choice)
    # The session is built on first use, inside the running event loop.
    transport = AiohttpTransport(client=functools.partial(_session, pool or 0))
    return HttpxAiohttpClient(transport=transport, timeout=None)


def _session(limit: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=limit,
        limit_per_host=0,
        keepalive_timeout=KEEPALIVE_S,
        ssl=httpx.create_ssl_context(),
    )
    return aiohttp.ClientSession(connector=connector)


def describe(exc: BaseException) -> str:
    """What went wrong on the wire, in words an operator can act on."""
    cause = _root(exc)
    if isinstance(cause, aiohttp.ClientConnectorError | httpx.ConnectError):
        return f"cannot connect ({_reason(cause)})"
    if isinstance(cause, aiohttp.ClientPayloadError):
        return "connection dropped mid-response (body incomplete)"
    if isinstance(
        cause,
        aiohttp.ServerDisconnectedError
        | aiohttp.ClientOSError
        | httpx.RemoteProtocolError
        | httpx.ReadError
        | httpx.WriteError
        | ConnectionError,
    ):
        return f"connection dropped ({_reason(cause)})"
    if isinstance(cause, aiohttp.ClientResponseError):
        return f"answered something that is not HTTP ({cause.message})"
    return f"transport failed ({_reason(cause)})"


def _root(exc: BaseException) -> BaseException:
    # The aiohttp adapter re-raises its errors as httpx ones, sometimes the wrong
    # kind (a dropped connection arrives as ConnectTimeout); the cause is truthful.
    cause = exc.__cause__
    if isinstance(exc, httpx.HTTPError) and isinstance(cause, aiohttp.ClientError):
        return cause
    return exc


def _reason(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
