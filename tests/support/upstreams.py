"""Fake OpenAI and Ollama servers on 127.0.0.1 that speak the real wire formats.

Each runs uvicorn on a thread of its own, so a hanging upstream never blocks the
test's event loop. Behaviour is picked per request by the model name
(`fake-429`, `fake-drop`, ...) or for every request by `mode`:

    with FakeOpenAI(api_key="sk-test") as up:
        config = BackendConfig(name="up", kind="openai", models=("m",), base_url=up.url)
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .fake_server import (
    DropConnection,
    FakeUpstream,
    Received,
    WireResponse,
    forever,
    then_drop,
)

__all__ = [
    "MODES",
    "FakeDeepSeek",
    "FakeOllama",
    "FakeOpenAI",
    "FakeUpstream",
    "Received",
]

JSON = "application/json"
# More prompt tokens than any hold in the tests covers.
OVERCOUNT = 1_000_000

MODES = (
    "ok",  # a normal answer
    "slow",  # a normal answer after `delay_s`
    "nousage",  # a normal answer without any usage
    "hang",  # never answers, not even headers
    "drop",  # closes the socket mid-response
    "malformed",  # 200 with a body that is not JSON (or a stream event that is not)
    "truncated",  # a stream that ends cleanly without `data: [DONE]`; half a body
    "keepalive-hang",  # only `: keep-alive` comments and blank lines, forever
    "stall",  # stream: the role chunk and one token, then only keep-alives
    "error-event",  # stream: one token, then an error object as an event
    "busy",  # keep-alives (stream) or blank lines (not) for `delay_s`, then an answer
    "overcount",  # a normal answer whose usage claims a million prompt tokens
    "401",
    "402",
    "403",
    "404",
    "429",
    "500",
    "503",
)


def _words(text: str) -> list[str]:
    return text.split()


class FakeOpenAI(FakeUpstream):
    """OpenAI's `/v1/chat/completions` and `/v1/models`; `url` ends in `/v1`."""

    fingerprint = "fp_fake0penai"
    errors = {
        "401": (401, "invalid_request_error", "invalid_api_key"),
        "402": (402, "unknown_error", "invalid_request_error"),
        "403": (403, "request_forbidden", "unsupported_country_region_territory"),
        "404": (404, "invalid_request_error", "model_not_found"),
        "429": (429, "requests", "rate_limit_exceeded"),
        "500": (500, "server_error", None),
        "503": (503, "server_error", None),
    }
    messages = {
        "401": "Incorrect API key provided: {key}.",
        "402": "Insufficient Balance",
        "403": "Country, region, or territory not supported",
        "404": "The model `{model}` does not exist or you do not have access to it.",
        "429": "Rate limit reached for requests. Please try again later.",
        "500": "The server had an error while processing your request. Sorry!",
        "503": "The engine is currently overloaded, please try again later.",
    }

    def __init__(
        self,
        *,
        mode: str = "ok",
        api_key: str | None = None,
        delay_s: float = 1.0,
        keepalive_interval_s: float = 0.05,
        retry_after: str | None = "7",
        reply: str = "Hello from the fake upstream, one word at a time.",
        models: tuple[str, ...] = ("gpt-4o-mini", "deepseek-chat"),
    ) -> None:
        super().__init__()
        self.mode = mode
        self.api_key = api_key
        self.delay_s = delay_s
        self.keepalive_interval_s = keepalive_interval_s
        self.retry_after = retry_after
        self.reply = reply
        self.models = models

    @property
    def url(self) -> str:
        return f"{self.root}/v1"

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/v1/chat/completions", self._chat, methods=["POST"]),
                Route("/v1/models", self._models, methods=["GET"]),
            ]
        )

    def mode_for(self, model: Any) -> str:
        """The behaviour for a request naming `model`."""
        if isinstance(model, str) and model.startswith("fake-") and model[5:] in MODES:
            return model[5:]
        return self.mode

    def prompt_tokens(self, body: dict[str, Any]) -> int:
        """The usage this fake reports for a request's input; unlike a char count."""
        messages = body.get("messages") or []
        return 3 + sum(len(_words(str(m.get("content", "")))) for m in messages)

    def answer(self, body: dict[str, Any]) -> tuple[list[str], str]:
        """The reply's tokens, capped by `max_tokens`, and the finish reason."""
        words = _words(self.reply)
        tokens = [w if i == 0 else f" {w}" for i, w in enumerate(words)]
        cap = body.get("max_tokens") or body.get("max_completion_tokens")
        if isinstance(cap, int) and cap < len(tokens):
            return tokens[:cap], "length"
        return tokens, "stop"

    async def _models(self, request: Request) -> Response:
        await self.record(request)
        if denied := self._check_key(request):
            return denied
        data = [
            {"id": m, "object": "model", "created": 1700000000, "owned_by": "system"}
            for m in self.models
        ]
        return JSONResponse({"object": "list", "data": data})

    async def _chat(self, request: Request) -> Response:
        body = await self.record(request)
        if not isinstance(body, dict):
            return self._error(
                "400", "We could not parse the JSON body of your request."
            )
        mode = self.mode_for(body.get("model"))
        if denied := self._check_key(request) or self._check_model(body):
            return denied
        if mode in self.errors:
            message = self.messages[mode].format(key=self.api_key, model=body["model"])
            return self._error(mode, message)
        if mode == "hang":
            return WireResponse(self, forever(), status=None)
        if mode == "slow":
            await self.pause(self.delay_s)
        if mode == "busy" and not body.get("stream"):
            return WireResponse(
                self, self._busy_then(self._body(body, mode)), media_type=JSON
            )
        if body.get("stream"):
            return WireResponse(self, self._stream_pieces(body, mode))
        return self._complete(body, mode)

    def _check_key(self, request: Request) -> Response | None:
        sent = request.headers.get("authorization", "")
        if self.api_key is None or sent == f"Bearer {self.api_key}":
            return None
        # Echo the whole key sent, the worst an upstream can do, so tests can
        # prove the backend scrubs it.
        key = sent.removeprefix("Bearer ")
        return self._error("401", self.messages["401"].format(key=key))

    def _check_model(self, body: dict[str, Any]) -> Response | None:
        return None

    def _error(self, code: str, message: str) -> Response:
        status, kind, err_code = self.errors.get(
            code, (int(code), "invalid_request_error", None)
        )
        error = {"message": message, "type": kind, "param": None, "code": err_code}
        headers = (
            {"retry-after": self.retry_after}
            if status in (429, 503) and self.retry_after
            else {}
        )
        return JSONResponse({"error": error}, status_code=status, headers=headers)

    def completion(
        self, body: dict[str, Any], tokens: list[str], finish: str
    ) -> dict[str, Any]:
        """An OpenAI `chat.completion` object."""
        message = {"role": "assistant", "content": "".join(tokens), "refusal": None}
        choice = {
            "index": 0,
            "message": message,
            "logprobs": None,
            "finish_reason": finish,
        }
        return {
            "id": "chatcmpl-fake0001",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model"),
            "choices": [choice],
            "usage": self.usage(body, tokens),
            "system_fingerprint": self.fingerprint,
        }

    def usage(
        self, body: dict[str, Any], tokens: list[str], *, prompt: int | None = None
    ) -> dict[str, Any]:
        """An OpenAI `usage` object: what the fake counts, or `prompt` if given."""
        prompt = self.prompt_tokens(body) if prompt is None else prompt
        return {
            "prompt_tokens": prompt,
            "completion_tokens": len(tokens),
            "total_tokens": prompt + len(tokens),
        }

    def chunk(
        self, body: dict[str, Any], delta: dict[str, Any], finish: str | None
    ) -> dict[str, Any]:
        """An OpenAI `chat.completion.chunk` object with one choice."""
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        chunk = {
            "id": "chatcmpl-fake0001",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": body.get("model"),
            "system_fingerprint": self.fingerprint,
            "choices": [choice],
        }
        if _include_usage(body):
            chunk["usage"] = None
        return chunk

    def role_delta(self, token: str) -> dict[str, Any]:
        return {"role": "assistant", "content": token, "refusal": None}

    def token_delta(self, token: str) -> dict[str, Any]:
        return {"content": token}

    def _body(self, body: dict[str, Any], mode: str) -> bytes:
        tokens, finish = self.answer(body)
        completion = self.completion(body, tokens, finish)
        if mode == "nousage":
            del completion["usage"]
        if mode == "overcount":
            completion["usage"] = self.usage(body, tokens, prompt=OVERCOUNT)
        return json.dumps(completion).encode()

    def _complete(self, body: dict[str, Any], mode: str) -> Response:
        raw = self._body(body, mode)
        if mode in ("malformed", "truncated"):
            return Response(raw[: len(raw) // 2], media_type="application/json")
        if mode in ("keepalive-hang", "stall"):
            # DeepSeek keeps a slow non-streaming answer alive with blank lines.
            return WireResponse(
                self, self._blank_lines(), media_type="application/json"
            )
        if mode == "drop":
            return WireResponse(
                self,
                then_drop([raw[: len(raw) // 2]]),
                media_type="application/json",
                content_length=len(raw),
            )
        return Response(raw, media_type="application/json")

    async def _stream_pieces(
        self, body: dict[str, Any], mode: str
    ) -> AsyncIterator[bytes]:
        if mode == "keepalive-hang":
            async for piece in self._keepalive():
                yield piece
        if mode == "busy":
            async for piece in self._busy_then(b""):
                yield piece
        tokens, finish = self.answer(body)
        yield _event(self.chunk(body, self.role_delta(""), None))
        for index, token in enumerate(tokens):
            yield _event(self.chunk(body, self.token_delta(token), None))
            if index == 0 and mode == "stall":
                async for piece in self._keepalive():
                    yield piece
            if index == 0 and mode == "error-event":
                error = {
                    "message": "The model crashed mid-answer.",
                    "type": "server_error",
                }
                yield _event({"error": error})
                return
            if index == 1 and mode == "malformed":
                yield b"data: {this is not json\n\n"
            if index == 1 and mode == "drop":
                raise DropConnection()
        yield _event(self.chunk(body, {}, finish))
        if _include_usage(body) and mode != "nousage":
            final = self.chunk(body, {}, None) | {"choices": [], "usage": None}
            prompt = OVERCOUNT if mode == "overcount" else None
            final["usage"] = self.usage(body, tokens, prompt=prompt)
            yield _event(final)
        if mode != "truncated":
            yield b"data: [DONE]\n\n"

    async def _busy_then(self, answer: bytes) -> AsyncIterator[bytes]:
        """Keep the connection alive for `delay_s`, as DeepSeek does, then answer.

        A stream gets `: keep-alive` comments and blank lines; a plain answer gets
        blank lines ahead of its JSON, which JSON parsers skip as whitespace.
        """
        pieces = (b"\n",) if answer else (b": keep-alive\n\n", b"\n")
        deadline = time.monotonic() + self.delay_s
        while time.monotonic() < deadline:
            for piece in pieces:
                yield piece
                await asyncio.sleep(self.keepalive_interval_s)
        if answer:
            yield answer

    async def _blank_lines(self) -> AsyncIterator[bytes]:
        while True:
            yield b"\n"
            await asyncio.sleep(self.keepalive_interval_s)

    async def _keepalive(self) -> AsyncIterator[bytes]:
        while True:
            yield b": keep-alive\n\n"
            await asyncio.sleep(self.keepalive_interval_s)
            yield b"\n"
            await asyncio.sleep(self.keepalive_interval_s)


class FakeOllama(FakeOpenAI):
    """Ollama's `/api/tags` and OpenAI-compatible `/v1/...`; `url` is the server root.

    Ollama's `/v1` layer wraps errors in OpenAI's shape (`not_found_error` for a
    missing model); `native_errors=True` answers `{"error": "..."}` as its own API.
    """

    fingerprint = "fp_ollama"
    errors = {
        "401": (401, "api_error", None),
        "402": (402, "api_error", None),
        "429": (429, "api_error", None),
        "500": (500, "api_error", None),
        "503": (503, "api_error", None),
        "404": (404, "not_found_error", None),
    }
    messages = FakeOpenAI.messages | {
        "500": "llama runner process has terminated: exit status 2",
        # What Ollama answers past OLLAMA_MAX_QUEUE waiting requests.
        "503": "server busy, please try again.  maximum pending requests exceeded",
    }

    def __init__(
        self,
        *,
        models: tuple[str, ...] = ("llama3.2:3b",),
        native_errors: bool = False,
        **options: Any,
    ) -> None:
        super().__init__(models=models, **options)
        self.native_errors = native_errors

    @property
    def url(self) -> str:
        return self.root

    def app(self) -> Starlette:
        app = super().app()
        app.router.routes.append(Route("/api/tags", self._tags, methods=["GET"]))
        return app

    def _check_model(self, body: dict[str, Any]) -> Response | None:
        model = body.get("model")
        if model in self.models or str(model).startswith("fake-"):
            return None
        return self._error("404", f'model "{model}" not found, try pulling it first')

    def _error(self, code: str, message: str) -> Response:
        if not self.native_errors:
            return super()._error(code, message)
        status = self.errors.get(code, (int(code), "", None))[0]
        return JSONResponse({"error": message}, status_code=status)

    async def _tags(self, request: Request) -> Response:
        await self.record(request)
        models = [
            {
                "name": m,
                "model": m,
                "modified_at": "2025-01-15T10:00:00.000000000Z",
                "size": 2019393189,
                "digest": "a80c4f17acd5" + "0" * 52,
                "details": {
                    "format": "gguf",
                    "family": "llama",
                    "parameter_size": "3.2B",
                },
            }
            for m in self.models
        ]
        return JSONResponse({"models": models})

    def completion(
        self, body: dict[str, Any], tokens: list[str], finish: str
    ) -> dict[str, Any]:
        completion = super().completion(body, tokens, finish)
        completion["choices"][0]["message"] = {
            "role": "assistant",
            "content": "".join(tokens),
        }
        del completion["choices"][0]["logprobs"]
        return completion

    def chunk(
        self, body: dict[str, Any], delta: dict[str, Any], finish: str | None
    ) -> dict[str, Any]:
        chunk = super().chunk(body, delta, finish)
        chunk.pop("usage", None)
        del chunk["choices"][0]["logprobs"]
        return chunk

    def role_delta(self, token: str) -> dict[str, Any]:
        return {"role": "assistant", "content": token}

    def token_delta(self, token: str) -> dict[str, Any]:
        # Ollama repeats the role in every delta.
        return {"role": "assistant", "content": token}


class FakeDeepSeek(FakeOpenAI):
    """DeepSeek's API: `/chat/completions` at the root, cache counts in `usage`.

    DeepSeek's `base_url` has no `/v1`, its usage splits the prompt into cache hits
    and misses, and its errors use its own words.
    """

    errors = FakeOpenAI.errors | {
        "401": (401, "authentication_error", "invalid_request_error"),
        "402": (402, "unknown_error", "invalid_request_error"),
        "503": (503, "unknown_error", "invalid_request_error"),
    }
    messages = FakeOpenAI.messages | {
        "401": "Authentication Fails, Your api key: {key} is invalid",
        "429": "Rate Limit Reached",
        "503": "Server overloaded, please try again later",
    }

    def __init__(
        self, *, models: tuple[str, ...] = ("deepseek-chat",), **options: Any
    ) -> None:
        super().__init__(models=models, **options)

    @property
    def url(self) -> str:
        return self.root

    def app(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/chat/completions", self._chat, methods=["POST"]),
                Route("/models", self._models, methods=["GET"]),
            ]
        )

    def usage(
        self, body: dict[str, Any], tokens: list[str], *, prompt: int | None = None
    ) -> dict[str, Any]:
        usage = super().usage(body, tokens, prompt=prompt)
        hit = usage["prompt_tokens"] // 2
        return usage | {
            "prompt_cache_hit_tokens": hit,
            "prompt_cache_miss_tokens": usage["prompt_tokens"] - hit,
            "completion_tokens_details": {"reasoning_tokens": 0},
        }


def _event(data: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(data).encode() + b"\n\n"


def _include_usage(body: dict[str, Any]) -> bool:
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True
