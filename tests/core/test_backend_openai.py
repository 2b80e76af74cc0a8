"""The `openai` backend against a fake OpenAI server over real HTTP on 127.0.0.1."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from meld_core.backends import (
    ChatRequest,
    Chunk,
    OpenAIBackend,
    Usage,
    create_backend,
)
from meld_core.config import BackendConfig
from meld_core.errors import (
    InsufficientCredits,
    Overloaded,
    UpstreamError,
    UpstreamTimeout,
)
from tests.support.upstreams import FakeDeepSeek, FakeOpenAI

KEY = "sk-test-0123456789abcdefSECRET"
KEY_ENV = "MELD_TEST_UPSTREAM_KEY"
TIMEOUT_S = 0.3
# Requests that should succeed get a limit no loaded test machine reaches.
PATIENT_S = 10.0
# Two shared noisy cores: a timeout may fire late, never this late.
SLACK_S = 3.0
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {"role": "user", "content": "Say hello to the node."},
]


def config(url: str, **overrides: Any) -> BackendConfig:
    options: dict[str, Any] = {
        "name": "up",
        "kind": "openai",
        "models": ("gpt-4o-mini",),
        "base_url": url,
        "api_key_env": KEY_ENV,
        "max_concurrency": 8,
        "request_timeout_s": PATIENT_S,
    }
    return BackendConfig(**(options | overrides))


def chat(
    model: str = "gpt-4o-mini", *, stream: bool = False, **body: Any
) -> ChatRequest:
    full = {"model": model, "messages": MESSAGES, "stream": stream} | body
    return ChatRequest("req-1", model, full, max_tokens=64, stream=stream)


async def answer(backend: OpenAIBackend, request: ChatRequest) -> list[Chunk | Usage]:
    """Everything a request yields: the completion's usage, or a stream's items."""
    if not request.stream:
        return [(await backend.complete(request)).usage]
    return [item async for item in backend.stream(request)]


def chunk_data(items: list[Chunk | Usage]) -> list[dict[str, Any]]:
    """The chunk objects among a stream's items."""
    return [item.data for item in items if isinstance(item, Chunk)]


@pytest.fixture(params=["aiohttp", "httpx"])
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    monkeypatch.setenv("MELD_HTTP_TRANSPORT", request.param)
    return str(request.param)


@pytest.fixture(scope="module")
def shared_upstream() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key=KEY) as up:
        yield up


@pytest.fixture
def upstream(shared_upstream: FakeOpenAI) -> FakeOpenAI:
    """The module's shared fake server, with its records cleared."""
    shared_upstream.reset()
    return shared_upstream


@pytest.fixture
async def own_upstream() -> AsyncIterator[FakeOpenAI]:
    """A fake server for this test alone, for counting disconnects or stopping it."""
    async with FakeOpenAI(api_key=KEY) as up:
        yield up


@pytest.fixture
async def backend(
    upstream: FakeOpenAI, transport: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[OpenAIBackend]:
    monkeypatch.setenv(KEY_ENV, KEY)
    backend = OpenAIBackend(config(upstream.url))
    await backend.start()
    yield backend
    await backend.close()


@pytest.fixture
async def impatient(
    upstream: FakeOpenAI, transport: str, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[OpenAIBackend]:
    """A backend whose `request_timeout_s` is TIMEOUT_S."""
    monkeypatch.setenv(KEY_ENV, KEY)
    backend = OpenAIBackend(config(upstream.url, request_timeout_s=TIMEOUT_S))
    yield backend
    await backend.close()


async def test_complete_forwards_the_body_with_model_cap_and_bearer_key(
    backend: OpenAIBackend, upstream: FakeOpenAI
) -> None:
    request = chat(temperature=0.2, max_tokens=5000, stream_options={"x": 1})

    completion = await backend.complete(request)

    sent = upstream.last
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert sent.body["max_tokens"] == 64
    assert sent.body["temperature"] == 0.2
    assert sent.body["messages"] == MESSAGES
    assert sent.body["stream"] is False
    assert "stream_options" not in sent.body
    assert completion.body["object"] == "chat.completion"
    assert completion.body["choices"][0]["message"]["content"].startswith("Hello")


async def test_complete_reports_the_upstreams_usage(
    backend: OpenAIBackend, upstream: FakeOpenAI
) -> None:
    completion = await backend.complete(chat())

    reported = completion.body["usage"]
    assert completion.usage == Usage(
        reported["prompt_tokens"], reported["completion_tokens"], estimated=False
    )
    assert completion.usage.input_tokens == upstream.prompt_tokens(upstream.last.body)


async def test_complete_caps_max_completion_tokens_when_the_caller_used_it(
    backend: OpenAIBackend, upstream: FakeOpenAI
) -> None:
    await backend.complete(chat(max_completion_tokens=9000))

    assert upstream.last.body["max_completion_tokens"] == 64
    assert "max_tokens" not in upstream.last.body


async def test_stream_yields_chunks_then_the_upstreams_usage_last(
    backend: OpenAIBackend, upstream: FakeOpenAI
) -> None:
    items = await answer(backend, chat(stream=True))

    assert upstream.last.body["stream_options"] == {"include_usage": True}
    chunks, usage = chunk_data(items[:-1]), items[-1]
    assert len(chunks) == len(items) - 1
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert usage == Usage(upstream.prompt_tokens(upstream.last.body), len(text.split()))


async def test_stream_forwards_the_usage_chunk_only_when_the_caller_asked(
    backend: OpenAIBackend,
) -> None:
    plain = await answer(backend, chat(stream=True))
    asked = await answer(
        backend, chat(stream=True, stream_options={"include_usage": True})
    )

    assert all(c["choices"] for c in chunk_data(plain))
    usage_chunk, usage = chunk_data(asked)[-1], asked[-1]
    assert usage_chunk["choices"] == []
    assert isinstance(usage, Usage)
    assert usage_chunk["usage"]["completion_tokens"] == usage.output_tokens


@pytest.mark.parametrize("stream", [False, True])
async def test_missing_usage_is_estimated_from_characters(
    backend: OpenAIBackend, stream: bool
) -> None:
    reply = "Hello from the fake upstream, one word at a time."
    prompt = sum(len(m["content"]) for m in MESSAGES)

    usage = (await answer(backend, chat("fake-nousage", stream=stream)))[-1]

    assert usage == Usage(-(-prompt // 4), -(-len(reply) // 4), estimated=True)


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("500", "500 Internal Server Error: The server had an error"),
        ("402", "402 Payment Required: Insufficient Balance"),
        ("401", "401 Unauthorized: Incorrect API key"),
        ("403", "403 Forbidden: Country, region, or territory not supported"),
        ("404", "404 Not Found: The model `fake-404` does not exist"),
    ],
)
async def test_an_upstream_error_status_is_an_upstream_error_quoting_it(
    backend: OpenAIBackend, mode: str, words: str, stream: bool
) -> None:
    with pytest.raises(UpstreamError) as caught:
        await answer(backend, chat(f"fake-{mode}", stream=stream))

    assert not isinstance(caught.value, InsufficientCredits)
    assert caught.value.status == 502
    assert caught.value.message.startswith("backend 'up': upstream answered ")
    assert words in caught.value.message


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize(
    ("mode", "words"),
    [
        ("429", "429 Too Many Requests: Rate limit reached"),
        ("503", "503 Service Unavailable: The engine is currently overloaded"),
    ],
)
async def test_an_upstream_out_of_capacity_is_overloaded_with_its_retry_after(
    backend: OpenAIBackend, mode: str, words: str, stream: bool
) -> None:
    with pytest.raises(Overloaded) as caught:
        await answer(backend, chat(f"fake-{mode}", stream=stream))

    assert (caught.value.status, caught.value.type) == (429, "overloaded")
    assert words in caught.value.message
    assert "(Retry-After: 7 s)" in caught.value.message
    assert caught.value.retry_after_s == 7


async def test_an_upstream_429_without_retry_after_still_says_when_to_retry(
    upstream: FakeOpenAI, backend: OpenAIBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(upstream, "retry_after", None)

    with pytest.raises(Overloaded) as caught:
        await backend.complete(chat("fake-429"))

    assert caught.value.retry_after_s is not None and caught.value.retry_after_s >= 1


@pytest.mark.parametrize(
    ("env", "hint"),
    [
        (KEY_ENV, f"check the API key in {KEY_ENV}"),
        ("MELD_TEST_UNSET_KEY", "MELD_TEST_UNSET_KEY is not set"),
    ],
)
async def test_a_refused_key_names_the_variable_to_check_and_not_the_key(
    upstream: FakeOpenAI,
    transport: str,
    monkeypatch: pytest.MonkeyPatch,
    env: str,
    hint: str,
) -> None:
    monkeypatch.setenv(KEY_ENV, "sk-wrong-key-that-the-upstream-echoes")
    monkeypatch.delenv("MELD_TEST_UNSET_KEY", raising=False)
    backend = OpenAIBackend(config(upstream.url, api_key_env=env))

    with pytest.raises(UpstreamError) as caught:
        await backend.complete(chat())
    await backend.close()

    assert caught.value.status == 502
    assert hint in caught.value.message
    assert "sk-wrong-key" not in caught.value.message


@pytest.mark.parametrize(
    ("mode", "stream", "words"),
    [
        ("drop", False, "connection dropped"),
        ("drop", True, "connection dropped"),
        ("malformed", False, "malformed JSON"),
        ("malformed", True, "malformed JSON"),
        ("truncated", False, "malformed JSON"),
        ("truncated", True, "stream ended without [DONE]"),
        ("error-event", True, "failed mid-stream: The model crashed mid-answer."),
    ],
)
async def test_a_broken_answer_is_an_upstream_error_saying_what_broke(
    backend: OpenAIBackend, mode: str, stream: bool, words: str
) -> None:
    with pytest.raises(UpstreamError) as caught:
        await answer(backend, chat(f"fake-{mode}", stream=stream))

    assert caught.value.status == 502
    assert words in caught.value.message


@pytest.mark.parametrize("stream", [False, True])
async def test_an_unreachable_upstream_is_an_upstream_error(
    transport: str, stream: bool
) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    backend = OpenAIBackend(config(f"http://127.0.0.1:{port}/v1"))

    with pytest.raises(UpstreamError) as caught:
        await answer(backend, chat(stream=stream))
    await backend.close()

    assert "cannot connect" in caught.value.message


@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("mode", ["hang", "keepalive-hang"])
async def test_an_upstream_that_sends_nothing_real_times_out(
    impatient: OpenAIBackend, mode: str, stream: bool
) -> None:
    started = time.monotonic()

    with pytest.raises(UpstreamTimeout) as caught:
        async with asyncio.timeout(SLACK_S):
            await answer(impatient, chat(f"fake-{mode}", stream=stream))

    assert TIMEOUT_S * 0.9 <= time.monotonic() - started < SLACK_S
    assert caught.value.status == 504
    assert f"within {TIMEOUT_S:g} s" in caught.value.message


async def test_a_stream_that_stalls_after_a_token_times_out(
    impatient: OpenAIBackend,
) -> None:
    received: list[Chunk | Usage] = []

    with pytest.raises(UpstreamTimeout):
        async with asyncio.timeout(SLACK_S):
            async for item in impatient.stream(chat("fake-stall", stream=True)):
                received.append(item)

    deltas = [c["choices"][0]["delta"] for c in chunk_data(received)]
    assert [d.get("content") for d in deltas] == ["", "Hello"]


@pytest.mark.parametrize("stream", [False, True])
async def test_keep_alives_before_an_answer_inside_the_timeout_do_not_fail_it(
    upstream: FakeOpenAI,
    transport: str,
    monkeypatch: pytest.MonkeyPatch,
    stream: bool,
) -> None:
    # DeepSeek while busy: keep-alives for a while, then the answer, inside the limit.
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setattr(upstream, "delay_s", 0.5)
    backend = OpenAIBackend(config(upstream.url, request_timeout_s=2.0))

    items = await answer(backend, chat("fake-busy", stream=stream))
    await backend.close()

    usage = items[-1]
    assert isinstance(usage, Usage) and not usage.estimated
    assert usage.output_tokens > 0
    if stream:
        deltas = [c["choices"][0]["delta"] for c in chunk_data(items)]
        assert "".join(d.get("content", "") for d in deltas).startswith("Hello")


@pytest.mark.parametrize("stream", [False, True])
async def test_keep_alives_past_the_timeout_time_out(
    upstream: FakeOpenAI,
    impatient: OpenAIBackend,
    monkeypatch: pytest.MonkeyPatch,
    stream: bool,
) -> None:
    monkeypatch.setattr(upstream, "delay_s", TIMEOUT_S * 4)
    started = time.monotonic()

    with pytest.raises(UpstreamTimeout):
        async with asyncio.timeout(SLACK_S):
            await answer(impatient, chat("fake-busy", stream=stream))

    assert TIMEOUT_S * 0.9 <= time.monotonic() - started < SLACK_S


@pytest.mark.parametrize("stream", [False, True])
async def test_deepseeks_answer_and_its_cache_split_usage_are_read(
    transport: str, monkeypatch: pytest.MonkeyPatch, stream: bool
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    async with FakeDeepSeek(api_key=KEY) as deepseek:
        backend = OpenAIBackend(config(deepseek.url, models=("deepseek-chat",)))
        items = await answer(backend, chat("deepseek-chat", stream=stream))
        await backend.close()
        sent = deepseek.last

    assert sent.path == "/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {KEY}"
    assert items[-1] == Usage(deepseek.prompt_tokens(sent.body), 10)


async def test_a_slow_answer_inside_the_timeout_succeeds(
    upstream: FakeOpenAI, transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    monkeypatch.setattr(upstream, "delay_s", 0.2)
    backend = OpenAIBackend(config(upstream.url))

    completion = await backend.complete(chat("fake-slow"))
    items = await answer(backend, chat("fake-slow", stream=True))
    await backend.close()

    assert completion.usage.output_tokens > 0
    assert isinstance(items[-1], Usage) and items[-1].output_tokens > 0


@pytest.mark.parametrize(
    ("mode", "stream"), [("hang", False), ("keepalive-hang", True)]
)
async def test_cancelling_a_request_closes_the_upstream_connection(
    own_upstream: FakeOpenAI,
    transport: str,
    monkeypatch: pytest.MonkeyPatch,
    mode: str,
    stream: bool,
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    backend = OpenAIBackend(config(own_upstream.url))
    task = asyncio.create_task(answer(backend, chat(f"fake-{mode}", stream=stream)))
    await own_upstream.await_for(requests=1)

    task.cancel()
    async with asyncio.timeout(SLACK_S):
        with pytest.raises(asyncio.CancelledError):
            await task
        await own_upstream.await_for(disconnects=1)
    await backend.close()


async def test_a_consumer_leaving_a_stream_early_closes_the_upstream_connection(
    own_upstream: FakeOpenAI, transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    backend = OpenAIBackend(config(own_upstream.url))

    items = backend.stream(chat("fake-stall", stream=True))
    async with contextlib.aclosing(items):
        first = await anext(items)

    assert isinstance(first, Chunk)
    await own_upstream.await_for(disconnects=1)
    await backend.close()


async def test_the_api_key_never_reaches_an_error_or_a_log(
    upstream: FakeOpenAI,
    transport: str,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    wrong_key = "sk-wrong-key-that-the-upstream-echoes"
    monkeypatch.setenv(KEY_ENV, wrong_key)
    backend = OpenAIBackend(config(upstream.url))
    caplog.set_level(logging.DEBUG, logger="meld_core")

    with pytest.raises(UpstreamError) as caught:
        await backend.complete(chat())
    await backend.close()

    assert upstream.last.headers["authorization"] == f"Bearer {wrong_key}"
    assert "401" in caught.value.message
    assert wrong_key not in caught.value.message
    assert wrong_key not in caplog.text


async def test_health_is_true_only_for_a_reachable_upstream_accepting_the_key(
    own_upstream: FakeOpenAI, transport: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(KEY_ENV, KEY)
    good = OpenAIBackend(config(own_upstream.url))
    wrong = OpenAIBackend(config(own_upstream.url, api_key_env="MELD_TEST_NO_SUCH_KEY"))

    assert await good.health() is True
    assert own_upstream.last.path == "/v1/models"
    assert await wrong.health() is False
    own_upstream.stop()
    assert await good.health() is False
    await good.close()
    await wrong.close()


async def test_sequential_requests_reuse_one_keep_alive_connection(
    backend: OpenAIBackend, upstream: FakeOpenAI
) -> None:
    for _ in range(4):
        await backend.complete(chat())
        await answer(backend, chat(stream=True))

    assert len({r.client_port for r in upstream.requests}) == 1


def test_create_backend_picks_the_class_by_kind() -> None:
    backend = create_backend(config("http://127.0.0.1:9/v1"))

    assert isinstance(backend, OpenAIBackend)
    assert backend.name == "up"
