"""One chat completion from admission to charge: hold, queue, backend call, settle."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .backends.base import Backend, ChatRequest, Chunk, Completion, Usage
from .chat import ChatCall, parse_chat, sse
from .config import BackendConfig, Config
from .errors import (
    MeldError,
    ModelNotFound,
    Unauthorized,
    Unavailable,
    UpstreamError,
    UpstreamTimeout,
)
from .limits import PeerLimiter
from .route import Route
from .signing import SignedRequest
from .types import Admission, Balance, RequestRecord

if TYPE_CHECKING:
    from .ledger import Ledger

log = logging.getLogger(__name__)

REQUEST_ID_HEADER = "X-Meld-Request-Id"

# A hold outlives its request's worst case by this much before the sweeper frees it.
HOLD_GRACE_S = 60.0
# A stream's whole life, from arrival to its last event; one still running then is
# ended with 504, so it cannot outlive its hold and be served without a charge.
MAX_STREAM_S = 3600.0
# A stream's hold is swept only after it surely ended (plus the usual grace).
STREAM_HOLD_S = MAX_STREAM_S + HOLD_GRACE_S


@dataclass(frozen=True, slots=True)
class Queued:
    """The request waits for a slot at this position."""

    position: int
    eta_s: float


@dataclass(frozen=True, slots=True)
class Piece:
    """Bytes of a streaming answer, ready to send."""

    data: bytes


@dataclass(frozen=True, slots=True)
class Answer:
    """The whole answer: a JSON completion, a finished stream's tail, or a replay."""

    status: int
    content_type: str
    body: bytes
    headers: dict[str, str]


@dataclass(frozen=True, slots=True)
class Failed:
    """The request ended with a protocol error."""

    error: MeldError


Event = Queued | Piece | Answer | Failed


class Exchange:
    """One chat completion in flight: its own task and the events it produces.

    The task is detached from the HTTP connection, so a caller who goes away only
    cancels it, and the task's own cleanup frees the slot and the hold.
    """

    def __init__(self, request_id: str) -> None:
        self.request_id = request_id
        self.events: asyncio.Queue[Event] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    def put(self, event: Event) -> None:
        self.events.put_nowait(event)

    def cancel(self) -> None:
        """Called when the caller disconnects; safe to call more than once."""
        if self.task is not None and not self.task.done():
            self.task.cancel()


class Router:
    """Routes chat completions to backends by model, charging credits for each."""

    def __init__(
        self,
        config: Config,
        ledger: Ledger,
        backends: dict[str, Backend],
        *,
        on_finished: Callable[[RequestRecord], None],
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.config = config
        self.ledger = ledger
        self.clock = clock
        self.wall_clock = wall_clock
        self.limiter = PeerLimiter(config.limits, clock=clock)
        self.routes = {
            b.name: Route(backends[b.name], clock=clock) for b in config.backends
        }
        self.by_model = {m: r for r in self.routes.values() for m in r.config.models}
        self.on_finished = on_finished
        self.exchanges: set[Exchange] = set()
        self._undoing: set[asyncio.Task[None]] = set()

    def open(
        self, signed: SignedRequest, raw: bytes, request_id: str, idem_key: str | None
    ) -> Exchange:
        """Start a chat completion; its events arrive on the exchange's queue."""
        exchange = Exchange(request_id)
        exchange.task = asyncio.create_task(
            self._run(exchange, signed, raw, idem_key), name=f"chat {request_id}"
        )
        self.exchanges.add(exchange)
        exchange.task.add_done_callback(lambda _: self.exchanges.discard(exchange))
        return exchange

    async def _run(
        self,
        exchange: Exchange,
        signed: SignedRequest,
        raw: bytes,
        idem_key: str | None,
    ) -> None:
        rid = exchange.request_id
        try:
            await self._handle(exchange, signed, raw, idem_key)
        except Exception:
            # A bug or a broken ledger must still answer the caller, who would
            # otherwise wait on the exchange forever.
            log.exception("request %s failed before it could be answered", rid)
            exchange.put(Failed(MeldError("the node failed to handle this request")))
        finally:
            self.limiter.finish(rid)

    async def _handle(
        self,
        exchange: Exchange,
        signed: SignedRequest,
        raw: bytes,
        idem_key: str | None,
    ) -> None:
        started = self.clock()
        rid = exchange.request_id
        call: ChatCall | None = None
        problem: MeldError | None = None
        try:
            call = parse_chat(raw)
        except MeldError as exc:
            problem = exc
        route = self.by_model.get(call.model) if call else None
        if call and route is None:
            problem = ModelNotFound(f"no backend routes model '{call.model}'")

        admitting = asyncio.ensure_future(
            self._admit(signed, raw, rid, call, route, problem, idem_key)
        )
        try:
            # Shielded: the ledger may still admit after the caller left, and
            # what it admitted must then be undone (see _undo_admission).
            admission = await asyncio.shield(admitting)
        except asyncio.CancelledError:
            undo = asyncio.create_task(
                self._undo_admission(admitting, exchange, call, route, idem_key)
            )
            self._undoing.add(undo)
            undo.add_done_callback(self._undoing.discard)
            raise
        except MeldError as exc:
            self.limiter.finish(rid)
            if not isinstance(exc, Unauthorized):
                await self._log_refusal(signed.peer, call, route, rid, exc, started)
            exchange.put(Failed(exc))
            return
        if admission.replay is not None:
            self.limiter.finish(rid)
            exchange.put(_replayed(*admission.replay))
            return
        if problem is not None or call is None or route is None:
            await self._log_refusal(signed.peer, call, route, rid, problem, started)
            exchange.put(
                Failed(problem or UpstreamError("request could not be routed"))
            )
            return

        serving = _Serving(exchange, call, route, admission, idem_key, started)
        try:
            await self._serve(serving)
        except BaseException as exc:
            await asyncio.shield(self._fail(serving, exc))
            if not isinstance(exc, Exception):
                raise

    async def _undo_admission(
        self,
        admitting: asyncio.Future[Admission],
        exchange: Exchange,
        call: ChatCall | None,
        route: Route | None,
        idem_key: str | None,
    ) -> None:
        """Free what an admission took after its caller left while it waited."""
        started = self.clock()
        try:
            admission = await admitting
        except Exception:
            return  # refused: it took nothing but the nonce
        finally:
            # The gate may have reserved the in-flight slot after the caller left.
            self.limiter.finish(exchange.request_id)
        if admission.replay is not None or call is None or route is None:
            return
        serving = _Serving(exchange, call, route, admission, idem_key, started)
        await self._fail(serving, asyncio.CancelledError())

    async def drain(self) -> None:
        """Wait until admissions whose callers left are undone."""
        while self._undoing:
            await asyncio.gather(*self._undoing, return_exceptions=True)

    async def _admit(
        self,
        signed: SignedRequest,
        raw: bytes,
        rid: str,
        call: ChatCall | None,
        route: Route | None,
        problem: MeldError | None,
        idem_key: str | None,
    ) -> Admission:
        if problem is not None or call is None or route is None:
            # Authenticate first, so a stranger learns nothing from a body's errors.
            return await self.ledger.admit(signed, request_id=rid)

        price = self.config.price(call.model)
        hold = price.cost(len(raw), self._max_tokens(call))
        idempotency = None
        if idem_key:
            idempotency = (idem_key, hashlib.sha256(raw).hexdigest())

        def gate(peer: str, own_limits: tuple[int | None, int | None]) -> None:
            self.limiter.reserve(peer, rid, own_limits)
            route.check_admission()

        ttl = route.config.queue_timeout_s + route.config.request_timeout_s
        ttl += STREAM_HOLD_S if call.stream else HOLD_GRACE_S
        return await self.ledger.admit(
            signed,
            hold=hold,
            request_id=rid,
            hold_ttl_s=ttl,
            gate=gate,
            idempotency=idempotency,
        )

    def _max_tokens(self, call: ChatCall) -> int:
        cap = self.config.price(call.model).max_output_tokens
        return min(call.max_tokens or cap, cap)

    async def _serve(self, s: _Serving) -> None:
        route, call = s.route, s.call
        waiter = route.queue.try_acquire(s.admission.peer)
        if waiter is not None:
            s.position = route.queue.position(waiter)
            on_position = None
            if call.stream:

                def on_position(position: int, eta_s: float) -> None:
                    s.exchange.put(Queued(position, eta_s))

            remaining = route.config.queue_timeout_s - (self.clock() - s.started)
            await route.queue.wait(waiter, max(0.0, remaining), on_position)
        s.queued_ms = (self.clock() - s.started) * 1000

        request = ChatRequest(
            request_id=s.exchange.request_id,
            model=call.model,
            body=call.body,
            max_tokens=self._max_tokens(call),
            stream=call.stream,
        )
        began = self.clock()
        route.in_flight += 1
        try:
            if call.stream:
                usage = await self._stream(s, route.backend, request)
            else:
                s.completion = await route.backend.complete(request)
                usage = s.completion.usage
        finally:
            route.in_flight -= 1
            route.queue.release()
        route.observe_service(self.clock() - began, usage.output_tokens)

        await self._settle(s, usage)

    async def _stream(
        self, s: _Serving, backend: Backend, request: ChatRequest
    ) -> Usage:
        usage: Usage | None = None
        async for item in backend.stream(request):
            if self.clock() - s.started > MAX_STREAM_S:
                raise UpstreamTimeout(
                    f"stream ran past the node's limit of {MAX_STREAM_S:g}s"
                )
            if isinstance(item, Usage):
                usage = item
            elif isinstance(item, Chunk):
                piece = sse(item.data)
                if s.idem_key:
                    s.sent.append(piece)
                s.exchange.put(Piece(piece))
        if usage is None:
            raise UpstreamError(
                f"backend '{backend.name}' ended a stream without usage"
            )
        return usage

    async def _settle(self, s: _Serving, usage: Usage) -> None:
        price = self.config.price(s.call.model)
        cost = min(
            price.cost(usage.input_tokens, usage.output_tokens), s.admission.held
        )
        record = self._record(s, 200, None, usage, cost)
        s.route.stats.record(record.latency_ms, ok=True)
        answers: list[Answer] = []

        def keep(balance: Balance) -> tuple[str, int, str, bytes]:
            # In the ledger's thread, so the answer is kept in the settle's commit.
            answer, stored = self._answer(s, cost, balance)
            answers.append(answer)
            assert s.idem_key is not None
            return s.idem_key, answer.status, answer.content_type, stored

        balance = await self.ledger.finish(
            s.admission.peer,
            s.admission.hold_id,
            cost,
            record=record,
            keep=keep if s.idem_key else None,
        )
        s.resolved = True
        answer = answers[0] if answers else self._answer(s, cost, balance)[0]
        self.on_finished(record)
        s.exchange.put(answer)

    def _answer(self, s: _Serving, cost: int, balance: Balance) -> tuple[Answer, bytes]:
        """The answer to send, and what to keep of it for an Idempotency-Key."""
        meld = self._meld(s, cost, balance)
        headers = _meld_headers(meld)
        if s.call.stream:
            tail = sse(meld, event="meld.done") + sse("[DONE]")
            answer = Answer(200, "text/event-stream", tail, headers)
            return answer, b"".join(s.sent) + tail
        assert s.completion is not None
        body = json.dumps({**s.completion.body, "meld": meld}).encode()
        return Answer(200, "application/json", body, headers), body

    async def _fail(self, s: _Serving, exc: BaseException) -> None:
        """Free the hold of a request that did not finish; nothing is charged."""
        if isinstance(exc, MeldError):
            error = exc
        elif isinstance(exc, asyncio.CancelledError):
            error = MeldError("the caller disconnected")
            error.status, error.type = 499, "client_disconnected"
        else:
            log.error("request %s failed", s.exchange.request_id, exc_info=exc)
            error = UpstreamError("the node failed to handle the backend's answer")
        record = self._record(s, error.status, error.type, None, 0)
        if not s.resolved:
            try:
                if s.admission.hold_id is not None:
                    await self.ledger.release(
                        s.admission.hold_id,
                        record=record,
                        idempotency_key=s.idem_key,
                        reason=error.type,
                    )
                else:
                    await self.ledger.record(record, drop_idempotency_key=s.idem_key)
            except Exception:
                # The ledger's expiry sweep frees this hold later; say so loudly.
                log.exception("could not release hold of %s", s.exchange.request_id)
        s.route.stats.record(record.latency_ms, ok=False)
        self.on_finished(record)
        s.exchange.put(Failed(error))

    async def _log_refusal(
        self,
        peer: str,
        call: ChatCall | None,
        route: Route | None,
        rid: str,
        error: MeldError | None,
        started: float,
    ) -> None:
        status = error.status if error else 500
        record = RequestRecord(
            request_id=rid,
            peer=peer,
            model=call.model if call else "",
            backend=route.name if route else "",
            status=status,
            error_type=error.type if error else None,
            queued_ms=0.0,
            latency_ms=(self.clock() - started) * 1000,
            input_tokens=0,
            output_tokens=0,
            credits=0,
            at=self.wall_clock(),
            stream=bool(call and call.stream),
        )
        try:
            await self.ledger.record(record)
        except Exception:
            log.warning("request %s: could not log its refusal", rid, exc_info=True)
        self.on_finished(record)

    def _record(
        self,
        s: _Serving,
        status: int,
        error_type: str | None,
        usage: Usage | None,
        cost: int,
    ) -> RequestRecord:
        latency_ms = (self.clock() - s.started) * 1000
        return RequestRecord(
            request_id=s.exchange.request_id,
            peer=s.admission.peer,
            model=s.call.model,
            backend=s.route.name,
            status=status,
            error_type=error_type,
            queued_ms=round(s.queued_ms, 1),
            latency_ms=round(latency_ms, 1),
            input_tokens=usage.input_tokens if usage else 0,
            output_tokens=usage.output_tokens if usage else 0,
            credits=cost,
            at=self.wall_clock(),
            stream=s.call.stream,
        )

    def _meld(self, s: _Serving, cost: int, balance: Balance) -> dict[str, Any]:
        return {
            "request_id": s.exchange.request_id,
            "backend": s.route.name,
            "queue_position": s.position,
            "queued_ms": round(s.queued_ms, 1),
            "credits_charged": cost,
            "balance": balance.balance,
        }

    def backend_config(self, name: str) -> BackendConfig:
        return self.routes[name].config

    def check_model(self, model: str) -> Route:
        route = self.by_model.get(model)
        if route is None:
            raise ModelNotFound(f"no backend routes model '{model}'")
        if not route.healthy:
            raise Unavailable(f"backend '{route.name}' is not healthy")
        return route


class _Serving:
    """The mutable state of one admitted request while it is served."""

    __slots__ = (
        "admission",
        "call",
        "completion",
        "exchange",
        "idem_key",
        "position",
        "queued_ms",
        "resolved",
        "route",
        "sent",
        "started",
    )

    def __init__(
        self,
        exchange: Exchange,
        call: ChatCall,
        route: Route,
        admission: Admission,
        idem_key: str | None,
        started: float,
    ) -> None:
        self.exchange = exchange
        self.call = call
        self.route = route
        self.admission = admission
        self.idem_key = idem_key
        self.started = started
        self.position = 0
        self.queued_ms = 0.0
        self.completion: Completion | None = None
        self.sent: list[bytes] = []
        self.resolved = False


def _meld_headers(meld: dict[str, Any]) -> dict[str, str]:
    return {
        "X-Meld-Queue-Position": str(meld["queue_position"]),
        "X-Meld-Queued-Ms": str(meld["queued_ms"]),
        "X-Meld-Credits-Charged": str(meld["credits_charged"]),
        "X-Meld-Balance": str(meld["balance"]),
    }


def _replayed(status: int, content_type: str, body: bytes) -> Answer:
    """A kept answer sent again, with the meld headers it was first sent with."""
    headers = {"X-Meld-Replayed": "true"}
    meld = _kept_meld(content_type, body)
    if meld is not None:
        headers |= _meld_headers(meld)
        headers[REQUEST_ID_HEADER] = str(meld["request_id"])
    return Answer(status, content_type, body, headers)


def _kept_meld(content_type: str, body: bytes) -> dict[str, Any] | None:
    """The `meld` object inside a kept answer; only its body is kept."""
    try:
        if content_type == "text/event-stream":
            marker = b"event: meld.done\ndata: "
            start = body.rindex(marker) + len(marker)
            meld = json.loads(body[start : body.index(b"\n", start)])
        else:
            meld = json.loads(body)["meld"]
        _meld_headers(meld)
        str(meld["request_id"])
    except (ValueError, KeyError, TypeError):
        log.warning("a kept answer carries no readable meld object")
        return None
    return meld if isinstance(meld, dict) else None
