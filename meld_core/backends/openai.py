"""A backend for any OpenAI-compatible chat API: OpenAI, DeepSeek, vLLM, llama.cpp."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator
from email.utils import parsedate_to_datetime
from typing import Any, TypeGuard

import httpx

from ..config import BackendConfig
from ..errors import MeldError, UpstreamError
from .base import (
    Backend,
    ChatRequest,
    Chunk,
    Completion,
    Usage,
    estimate_tokens,
    message_chars,
    prompt_chars,
    usage_json,
    wants_usage_chunk,
)
from .http import TRANSPORT_ERRORS, Reply, UpstreamClient, describe
from .sse import ServerSentEvent, aiter_events

log = logging.getLogger(__name__)

HEALTH_TIMEOUT_S = 3.0
# Enough of an error body to name the problem, not enough to flood a log line.
DETAIL_CHARS = 300
DRAIN_S = 0.1
# An upstream saying it is full (rate limit, overload) is asked again later, not
# reported broken; without its Retry-After a peer waits this long.
BUSY_STATUSES = frozenset({429, 503})
BUSY_RETRY_S = 1.0
KEY_STATUSES = frozenset({401, 403})


class OpenAIBackend(Backend):
    """Forwards chat requests to `{base_url}/chat/completions`."""

    kind = "openai"

    def __init__(self, config: BackendConfig) -> None:
        super().__init__(config)
        self._client: UpstreamClient | None = None

    @property
    def chat_url(self) -> str:
        return f"{self.config.base_url}/chat/completions"

    @property
    def health_url(self) -> str:
        return f"{self.config.base_url}/models"

    async def start(self) -> None:
        self._http()

    async def close(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def health(self) -> bool:
        timeout_s = min(HEALTH_TIMEOUT_S, self.config.request_timeout_s)
        try:
            async with asyncio.timeout(timeout_s):
                response = await self._http().httpx.get(
                    self.health_url, headers=self._headers()
                )
        except Exception as exc:
            log.debug("backend=%s health probe failed: %s", self.name, describe(exc))
            return False
        return response.is_success

    async def complete(self, request: ChatRequest) -> Completion:
        try:
            return await self._complete(request)
        except MeldError as exc:
            self.log_failure(request, exc)
            raise

    async def stream(self, request: ChatRequest) -> AsyncIterator[Chunk | Usage]:
        items = self._stream(request)
        try:
            async for item in items:
                yield item
        except MeldError as exc:
            self.log_failure(request, exc)
            raise
        finally:
            await items.aclose()

    async def _complete(self, request: ChatRequest) -> Completion:
        payload = self.payload(request)
        deadline = asyncio.get_running_loop().time() + self.config.request_timeout_s

        try:
            async with asyncio.timeout_at(deadline):
                response = await self._http().post_json(
                    self.chat_url, payload, self._headers()
                )
        except TimeoutError:
            raise self.timeout("no complete answer") from None
        except TRANSPORT_ERRORS as exc:
            raise self._transport_error(exc) from None
        self._check_status(response)

        body = self._completion_body(response.content)
        usage = _read_usage(body.get("usage"))
        if usage is None:
            usage = self._estimate(request, _completion_chars(body))
            body["usage"] = usage_json(usage)
        return Completion(body, usage)

    async def _stream(
        self, request: ChatRequest
    ) -> AsyncGenerator[Chunk | Usage, None]:
        client = self._http().httpx
        http_request = client.build_request(
            "POST", self.chat_url, json=self.payload(request), headers=self._headers()
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.config.request_timeout_s
        response = await self._open_stream(request, client, http_request, deadline)
        try:
            events = aiter_events(response.aiter_bytes())
            forward_usage = wants_usage_chunk(request.body)
            usage: Usage | None = None
            output_chars = 0
            while True:
                event = await self._next_event(request, events, deadline)
                if event is None:
                    break
                deadline = loop.time() + self.config.request_timeout_s
                data = self._chunk_data(event)
                usage = _read_usage(data.get("usage")) or usage
                choices = data.get("choices")
                if isinstance(choices, list):
                    output_chars += sum(_choice_chars(c, "delta") for c in choices)
                if choices or forward_usage:
                    yield Chunk(data)
            await _drain(events, deadline)
        finally:
            await response.aclose()
        yield usage or self._estimate(request, output_chars)

    def payload(self, request: ChatRequest) -> dict[str, Any]:
        """The body sent upstream: the caller's, with model, cap and stream set."""
        body = dict(request.body)
        body["model"] = request.model
        # Newer OpenAI models take only max_completion_tokens; keep the caller's key.
        cap_key = (
            "max_completion_tokens" if "max_completion_tokens" in body else "max_tokens"
        )
        body[cap_key] = request.max_tokens
        body["stream"] = request.stream
        if request.stream:
            options = body.get("stream_options")
            options = dict(options) if isinstance(options, dict) else {}
            body["stream_options"] = options | {"include_usage": True}
        else:
            body.pop("stream_options", None)
        return body

    def _estimate(self, request: ChatRequest, output_chars: int) -> Usage:
        """Usage counted here, for an upstream that reported none."""
        log.info(
            "backend=%s request_id=%s reported no usage; charging an estimate",
            self.name,
            request.request_id,
        )
        input_tokens = estimate_tokens(prompt_chars(request.body))
        return Usage(input_tokens, estimate_tokens(output_chars), estimated=True)

    def _http(self) -> UpstreamClient:
        if self._client is None:
            self._client = UpstreamClient(self.config.max_concurrency)
        return self._client

    def _headers(self) -> dict[str, str]:
        key = self.config.api_key()
        return {"Authorization": f"Bearer {key}"} if key else {}

    async def _open_stream(
        self,
        request: ChatRequest,
        client: httpx.AsyncClient,
        http_request: httpx.Request,
        deadline: float,
    ) -> httpx.Response:
        try:
            async with asyncio.timeout_at(deadline):
                response = await client.send(http_request, stream=True)
        except TimeoutError:
            raise self.timeout("no answer") from None
        except TRANSPORT_ERRORS as exc:
            raise self._transport_error(exc) from None
        try:
            if not response.is_success:
                async with asyncio.timeout_at(deadline):
                    await response.aread()
                self._check_status(response)
            kind = response.headers.get("content-type", "")
            if not kind.startswith("text/event-stream"):
                raise self.error(
                    f"answered a stream request with content-type {kind!r}"
                )
        except TimeoutError:
            await response.aclose()
            raise self.timeout("no answer") from None
        except TRANSPORT_ERRORS as exc:
            await response.aclose()
            raise self._transport_error(exc) from None
        except BaseException:
            await response.aclose()
            raise
        return response

    async def _next_event(
        self,
        request: ChatRequest,
        events: AsyncIterator[ServerSentEvent],
        deadline: float,
    ) -> ServerSentEvent | None:
        """The next data event, or None after `[DONE]`; comments do not count."""
        try:
            async with asyncio.timeout_at(deadline):
                event = await anext(events)
        except StopAsyncIteration:
            raise self.error("stream ended without [DONE]") from None
        except TimeoutError:
            raise self.timeout("no stream event") from None
        except TRANSPORT_ERRORS as exc:
            raise self._transport_error(exc) from None
        return None if event.data.strip() == "[DONE]" else event

    def _chunk_data(self, event: ServerSentEvent) -> dict[str, Any]:
        try:
            data = json.loads(event.data)
        except ValueError:
            raise self.error(
                "sent a stream event that is not JSON (malformed JSON)"
            ) from None
        if not isinstance(data, dict):
            raise self.error("sent a stream event that is not a JSON object")
        if "error" in data or event.event == "error":
            raise self.error(f"failed mid-stream: {self._detail(data)}")
        return data

    def _completion_body(self, content: bytes) -> dict[str, Any]:
        try:
            body = json.loads(content)
        except ValueError:
            raise self.error("answered with malformed JSON") from None
        if isinstance(body, dict) and "error" in body:
            raise self.error(f"answered with an error: {self._detail(body)}")
        if not isinstance(body, dict) or not isinstance(body.get("choices"), list):
            raise self.error("answered JSON that is not a chat completion")
        return body

    def _check_status(self, response: Reply | httpx.Response) -> None:
        if response.is_success:
            return
        status = response.status_code
        retry_after_s = _retry_after(response.headers.get("retry-after"))
        what = f"upstream answered {status}"
        if response.reason_phrase:
            what += f" {response.reason_phrase}"
        what += f": {self._detail(_json_or_text(response.content))}"
        if retry_after_s is not None:
            what += f" (Retry-After: {retry_after_s:g} s)"
        if status in KEY_STATUSES:
            what += f"; {self._key_hint()}"
        if status in BUSY_STATUSES:
            raise self.overloaded(what, retry_after_s=retry_after_s or BUSY_RETRY_S)
        raise self.error(what, retry_after_s=retry_after_s)

    def _key_hint(self) -> str:
        """What an operator should check when the upstream refuses the node's key."""
        env = self.config.api_key_env
        if env is None:
            return "the backend has no api_key_env configured"
        if not self.config.api_key():
            return f"{env} is not set in the node's environment"
        return f"check the API key in {env}"

    def _transport_error(self, exc: BaseException) -> UpstreamError:
        return self.error(self._scrub(describe(exc)))

    def _detail(self, body: Any) -> str:
        """The message inside an error body, in OpenAI's or Ollama's shape."""
        error = body.get("error", body) if isinstance(body, dict) else body
        if isinstance(error, dict):
            error = error.get("message") or error.get("detail") or json.dumps(error)
        text = " ".join(str(error).split()) or "(empty body)"
        if len(text) > DETAIL_CHARS:
            text = text[:DETAIL_CHARS] + "..."
        return self._scrub(text)

    def _scrub(self, text: str) -> str:
        # Some upstreams echo the key they rejected; it must not reach a peer or a log.
        key = self.config.api_key()
        return text.replace(key, "[api key]") if key else text


async def _drain(events: AsyncIterator[ServerSentEvent], deadline: float) -> None:
    """Read to the end after `[DONE]`, so the connection can go back to the pool."""
    # httpx closes a connection whose body was not read to its end; the rest is
    # normally just the chunked-encoding terminator, already on its way.
    loop = asyncio.get_running_loop()
    with contextlib.suppress(TimeoutError, *TRANSPORT_ERRORS):
        async with asyncio.timeout_at(min(deadline, loop.time() + DRAIN_S)):
            async for _ in events:
                pass


def _json_or_text(content: bytes) -> Any:
    try:
        return json.loads(content)
    except ValueError:
        return content.decode("utf-8", errors="replace")


def _read_usage(value: Any) -> Usage | None:
    if not isinstance(value, dict):
        return None
    prompt, completion = value.get("prompt_tokens"), value.get("completion_tokens")
    if not (_is_count(prompt) and _is_count(completion)):
        return None
    return Usage(prompt, completion)


def _is_count(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _completion_chars(body: dict[str, Any]) -> int:
    return sum(_choice_chars(choice, "message") for choice in body["choices"])


def _choice_chars(choice: Any, key: str) -> int:
    message = choice.get(key) if isinstance(choice, dict) else None
    return message_chars(message) if isinstance(message, dict) else 0


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header, either delay-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
