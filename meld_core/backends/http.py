"""The HTTP client the HTTP backends share, and plain words for its failures."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True, slots=True)
class Reply:
    """A whole upstream answer, read to its end; named as httpx names them."""

    status_code: int
    reason_phrase: str
    headers: Mapping[str, str]
    content: bytes

    @property
    def is_success(self) -> bool:
        return 200 <= self.status_code < 300


class UpstreamClient:
    """Pooled keep-alive connections to one backend, for `max_concurrency` requests.

    A whole-answer post goes straight to aiohttp: httpx's client layer on top of
    it cost about 300 us of CPU a request here, a third of all the node spends on
    one. Streams and probes keep httpx's API, whose cost a stream spreads thin.
    `MELD_HTTP_TRANSPORT=httpx` uses httpx's own pool for everything instead,
    which is slower under concurrency but has no second HTTP stack in it. No
    timeouts are set here: the backends enforce `request_timeout_s` themselves.
    Build it inside the running event loop.
    """

    def __init__(self, max_concurrency: int) -> None:
        pool = max_concurrency + SPARE_CONNECTIONS if max_concurrency > 0 else None
        choice = os.environ.get(TRANSPORT_ENV, "aiohttp")
        self._session: aiohttp.ClientSession | None = None
        if choice == "httpx":
            limits = httpx.Limits(
                max_connections=pool,
                max_keepalive_connections=pool,
                keepalive_expiry=KEEPALIVE_S,
            )
            self.httpx = httpx.AsyncClient(limits=limits, timeout=None)
            return
        if choice != "aiohttp":
            log.warning("unknown %s=%s; using aiohttp", TRANSPORT_ENV, choice)
        self._session = _session(pool or 0)
        # One pool for both: the transport closes the session when httpx closes.
        transport = AiohttpTransport(client=self._session)
        self.httpx = HttpxAiohttpClient(transport=transport, timeout=None)

    async def post_json(
        self, url: str, payload: Any, headers: Mapping[str, str]
    ) -> Reply:
        """POST `payload` as JSON and read the whole answer."""
        if self._session is None:
            got = await self.httpx.post(url, json=payload, headers=headers)
            return Reply(got.status_code, got.reason_phrase, got.headers, got.content)
        data = json.dumps(payload, ensure_ascii=False, separators=(",", ":"))
        sent = {**headers, "Content-Type": "application/json"}
        async with self._session.post(url, data=data.encode(), headers=sent) as r:
            content = await r.read()
        return Reply(r.status, r.reason or "", r.headers, content)

    async def aclose(self) -> None:
        await self.httpx.aclose()
        if self._session is not None:
            await self._session.close()


def _session(limit: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=limit,
        limit_per_host=0,
        keepalive_timeout=KEEPALIVE_S,
        ssl=httpx.create_ssl_context(),
    )
    return aiohttp.ClientSession(
        connector=connector, timeout=aiohttp.ClientTimeout(total=None)
    )


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
