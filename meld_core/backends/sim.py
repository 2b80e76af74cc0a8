"""A backend with no model: generated text after delays drawn from its settings."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from ..config import BackendConfig
from .base import (
    Backend,
    ChatRequest,
    Chunk,
    Completion,
    Usage,
    estimate_tokens,
    prompt_chars,
    usage_json,
    wants_usage_chunk,
)

Sleep = Callable[[float], Awaitable[None]]
Clock = Callable[[], float]

MIN_TOKENS, MAX_TOKENS = 16, 64
_WORDS = (
    "the", "node", "routes", "each", "request", "to", "a", "backend", "slot",
    "while", "peers", "wait", "in", "fair", "queue", "and", "credits", "move",
    "from", "hold", "settle", "once", "answer", "has", "been", "counted",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class _Plan:
    """What one simulated request answers, and when each piece is ready."""

    tokens: tuple[str, ...]
    delays: tuple[float, ...]
    finish_reason: str
    usage: Usage


class SimBackend(Backend):
    """Stands in for a CPU model server: `parallel` requests at once, the rest wait."""

    kind = "sim"

    def __init__(
        self,
        config: BackendConfig,
        *,
        sleep: Sleep = asyncio.sleep,
        clock: Clock = time.monotonic,
    ) -> None:
        super().__init__(config)
        self._sleep = sleep
        self._clock = clock
        self._slots = asyncio.Semaphore(config.parallel)
        self.busy = 0
        """Requests being worked on now (never more than `parallel`)."""

    async def health(self) -> bool:
        return True

    async def complete(self, request: ChatRequest) -> Completion:
        plan = self.plan(request)
        deadline = self._clock() + self.config.request_timeout_s

        async with self._slot(deadline):
            await self._wait(sum(plan.delays), deadline, "no complete answer")

        message = {"role": "assistant", "content": "".join(plan.tokens)}
        choice = {"index": 0, "message": message, "finish_reason": plan.finish_reason}
        body = _envelope(request, "chat.completion", [choice])
        body["usage"] = usage_json(plan.usage)
        return Completion(body, plan.usage)

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk | Usage]:
        plan = self.plan(request)
        deadline = self._clock() + self.config.request_timeout_s

        async with self._slot(deadline):
            await self._wait(plan.delays[0], deadline, "no stream event")
            yield _chunk(request, {"role": "assistant", "content": ""})
            for token, delay in zip(plan.tokens, plan.delays[1:], strict=True):
                deadline = self._clock() + self.config.request_timeout_s
                await self._wait(delay, deadline, "no stream event")
                yield _chunk(request, {"content": token})
            yield _chunk(request, {}, plan.finish_reason)
            if wants_usage_chunk(request.body):
                usage_chunk = _envelope(request, "chat.completion.chunk", [])
                usage_chunk["usage"] = usage_json(plan.usage)
                yield Chunk(usage_chunk)

        yield plan.usage

    def plan(self, request: ChatRequest) -> _Plan:
        """The answer to `request`, the same every time for the same request id."""
        rng = random.Random(request.request_id)
        drawn = rng.randint(MIN_TOKENS, MAX_TOKENS)
        count = max(0, min(request.max_tokens, drawn))
        words = [rng.choice(_WORDS) for _ in range(count)]
        tokens = tuple(w if i == 0 else f" {w}" for i, w in enumerate(words))

        # delays[0] is the time to first token, spent before the role chunk; then
        # delays[i + 1] comes before token i, so token 0 follows the role chunk at
        # once and every later token costs one time per output token.
        delays = [self._jittered(rng, self.config.ttft_s)]
        delays += [0.0] if tokens else []
        delays += [self._jittered(rng, self.config.tpot_s) for _ in tokens[1:]]

        usage = Usage(estimate_tokens(prompt_chars(request.body)), count)
        finish_reason = "length" if drawn > request.max_tokens else "stop"
        return _Plan(tokens, tuple(delays), finish_reason, usage)

    def _jittered(self, rng: random.Random, seconds: float) -> float:
        jitter = self.config.jitter
        if seconds <= 0 or jitter <= 0:
            return max(0.0, seconds)
        return seconds * max(0.0, rng.uniform(1 - jitter, 1 + jitter))

    async def _wait(self, delay: float, deadline: float, what: str) -> None:
        if delay <= 0:
            return
        remaining = deadline - self._clock()
        if delay > remaining:
            if remaining > 0:
                await self._sleep(remaining)
            raise self.timeout(what)
        await self._sleep(delay)

    @contextlib.asynccontextmanager
    async def _slot(self, deadline: float) -> AsyncIterator[None]:
        if self._slots.locked():
            await self._acquire_by(deadline)
        else:
            await self._slots.acquire()
        self.busy += 1
        try:
            yield
        finally:
            self.busy -= 1
            self._slots.release()

    async def _acquire_by(self, deadline: float) -> None:
        # Racing the semaphore against the injected sleep keeps one notion of time,
        # so a virtual clock in tests drives the wait for a slot too.
        acquire = asyncio.ensure_future(self._slots.acquire())
        expire = asyncio.ensure_future(self._sleep(max(0.0, deadline - self._clock())))
        try:
            await asyncio.wait((acquire, expire), return_when=asyncio.FIRST_COMPLETED)
        except BaseException:
            _abandon(acquire, self._slots)
            raise
        finally:
            expire.cancel()
        if acquire.done() and not acquire.cancelled():
            return
        _abandon(acquire, self._slots)
        raise self.timeout("no slot free in the simulated server")


def _abandon(acquire: asyncio.Future[Any], slots: asyncio.Semaphore) -> None:
    """Give up a pending acquire, returning the slot if it was granted meanwhile."""
    if not acquire.done():
        acquire.cancel()
    elif not acquire.cancelled():
        slots.release()


def _envelope(request: ChatRequest, kind: str, choices: list[Any]) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-sim-{request.request_id}",
        "object": kind,
        "created": int(time.time()),
        "model": request.model,
        "system_fingerprint": "fp_meld_sim",
        "choices": choices,
    }


def _chunk(
    request: ChatRequest, delta: dict[str, Any], finish_reason: str | None = None
) -> Chunk:
    choice = {"index": 0, "delta": delta, "finish_reason": finish_reason}
    return Chunk(_envelope(request, "chat.completion.chunk", [choice]))
