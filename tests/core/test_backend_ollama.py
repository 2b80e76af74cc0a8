"""The `ollama` backend against a fake Ollama server over real HTTP on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest

from meld_core.backends import (
    ChatRequest,
    Chunk,
    OllamaBackend,
    Usage,
    create_backend,
)
from meld_core.config import BackendConfig
from meld_core.errors import Overloaded, UpstreamError
from tests.support.upstreams import FakeOllama

MODEL = "llama3.2:3b"
MESSAGES = [{"role": "user", "content": "Why is the sky blue?"}]


def config(url: str, **overrides: Any) -> BackendConfig:
    options: dict[str, Any] = {
        "name": "local",
        "kind": "ollama",
        "models": (MODEL,),
        "base_url": url,
        "request_timeout_s": 5.0,
    }
    return BackendConfig(**(options | overrides))


def chat(model: str = MODEL, *, stream: bool = False) -> ChatRequest:
    body = {"model": model, "messages": MESSAGES, "stream": stream}
    return ChatRequest("req-1", model, body, max_tokens=32, stream=stream)


@pytest.fixture(scope="module")
def shared_ollama() -> Iterator[FakeOllama]:
    with FakeOllama() as up:
        yield up


@pytest.fixture
def ollama(shared_ollama: FakeOllama) -> FakeOllama:
    shared_ollama.reset()
    return shared_ollama


@pytest.fixture
async def backend(ollama: FakeOllama) -> AsyncIterator[OllamaBackend]:
    backend = OllamaBackend(config(ollama.url))
    await backend.start()
    yield backend
    await backend.close()


async def test_complete_posts_to_the_openai_compatible_path(
    backend: OllamaBackend, ollama: FakeOllama
) -> None:
    completion = await backend.complete(chat())

    assert ollama.last.path == "/v1/chat/completions"
    assert ollama.last.body["max_tokens"] == 32
    assert "authorization" not in ollama.last.headers
    assert completion.body["system_fingerprint"] == "fp_ollama"
    assert completion.usage == Usage(ollama.prompt_tokens(ollama.last.body), 10)


async def test_stream_yields_ollamas_chunks_then_its_usage(
    backend: OllamaBackend, ollama: FakeOllama
) -> None:
    items = [item async for item in backend.stream(chat(stream=True))]

    chunks = [i for i in items if isinstance(i, Chunk)]
    assert all(c.data["choices"] for c in chunks)
    assert chunks[-1].data["choices"][0]["finish_reason"] == "stop"
    assert items[-1] == Usage(ollama.prompt_tokens(ollama.last.body), 10)


@pytest.mark.parametrize("native", [False, True])
@pytest.mark.parametrize("stream", [False, True])
async def test_a_missing_model_is_an_upstream_error_quoting_ollama(
    backend: OllamaBackend,
    ollama: FakeOllama,
    monkeypatch: pytest.MonkeyPatch,
    native: bool,
    stream: bool,
) -> None:
    monkeypatch.setattr(ollama, "native_errors", native)

    with pytest.raises(UpstreamError) as caught:
        if stream:
            [item async for item in backend.stream(chat("mistral:7b", stream=True))]
        else:
            await backend.complete(chat("mistral:7b"))

    assert caught.value.message == (
        "backend 'local': upstream answered 404 Not Found: "
        'model "mistral:7b" not found, try pulling it first'
    )


async def test_a_crashed_runner_is_an_upstream_error_quoting_ollama(
    backend: OllamaBackend, ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ollama, "native_errors", True)

    with pytest.raises(UpstreamError) as caught:
        await backend.complete(chat("fake-500"))

    assert "500" in caught.value.message
    assert "llama runner process has terminated" in caught.value.message


@pytest.mark.parametrize("native", [False, True])
async def test_a_full_ollama_queue_is_overloaded_and_retried_later(
    backend: OllamaBackend,
    ollama: FakeOllama,
    monkeypatch: pytest.MonkeyPatch,
    native: bool,
) -> None:
    monkeypatch.setattr(ollama, "native_errors", native)
    monkeypatch.setattr(ollama, "retry_after", None)

    with pytest.raises(Overloaded) as caught:
        await backend.complete(chat("fake-503"))

    assert (caught.value.status, caught.value.type) == (429, "overloaded")
    assert "server busy, please try again." in caught.value.message
    assert caught.value.retry_after_s is not None and caught.value.retry_after_s >= 1


async def test_a_stream_waits_through_keep_alives_and_counts_ollamas_usage(
    backend: OllamaBackend, ollama: FakeOllama, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ollama, "delay_s", 0.3)

    items = [item async for item in backend.stream(chat("fake-busy", stream=True))]

    assert ollama.last.body["stream_options"] == {"include_usage": True}
    usage = items[-1]
    assert isinstance(usage, Usage) and not usage.estimated
    assert usage.input_tokens == ollama.prompt_tokens(ollama.last.body)


async def test_health_asks_the_tags_endpoint(
    backend: OllamaBackend, ollama: FakeOllama
) -> None:
    assert await backend.health() is True
    assert ollama.last.path == "/api/tags"


async def test_health_is_false_when_nothing_answers() -> None:
    up = FakeOllama().start()
    backend = OllamaBackend(config(up.url))
    up.stop()

    assert await backend.health() is False
    await backend.close()


async def test_a_base_url_ending_in_v1_reaches_the_same_server(
    ollama: FakeOllama,
) -> None:
    backend = OllamaBackend(config(f"{ollama.url}/v1"))

    await backend.complete(chat())
    healthy = await backend.health()
    await backend.close()

    assert [r.path for r in ollama.requests] == ["/v1/chat/completions", "/api/tags"]
    assert healthy is True


def test_create_backend_builds_an_ollama_backend() -> None:
    assert isinstance(create_backend(config("http://127.0.0.1:11434")), OllamaBackend)
