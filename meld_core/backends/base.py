"""The interface every backend implements, and the values that cross it."""

from __future__ import annotations

import abc
import logging
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from ..config import BackendConfig
from ..errors import MeldError, Overloaded, UpstreamError, UpstreamTimeout

log = logging.getLogger(__name__)

# A common rule of thumb for English text and BPE tokenizers; only used when an
# upstream reports no usage, so the charge is close rather than exact.
CHARS_PER_TOKEN = 4


@dataclass(frozen=True, slots=True)
class ChatRequest:
    """One admitted chat request, as the router hands it to a backend."""

    request_id: str
    model: str
    body: Mapping[str, Any]
    max_tokens: int
    stream: bool


@dataclass(frozen=True, slots=True)
class Usage:
    """Tokens a request consumed; `estimated` when counted here, not by the upstream."""

    input_tokens: int
    output_tokens: int
    estimated: bool = False


@dataclass(frozen=True, slots=True)
class Completion:
    """A whole non-streaming answer: a `chat.completion` object and its usage."""

    body: dict[str, Any]
    usage: Usage


@dataclass(frozen=True, slots=True)
class Chunk:
    """One streaming piece: an OpenAI `chat.completion.chunk` object."""

    data: dict[str, Any]


class Backend(abc.ABC):
    """A model server the node forwards admitted requests to."""

    kind: ClassVar[str]

    def __init__(self, config: BackendConfig) -> None:
        self.config = config

    @property
    def name(self) -> str:
        return self.config.name

    async def start(self) -> None:  # noqa: B027 - most backends need nothing here
        """Create what the backend needs before its first request (HTTP clients)."""

    async def close(self) -> None:  # noqa: B027 - most backends need nothing here
        """Release what `start` created."""

    @abc.abstractmethod
    async def complete(self, request: ChatRequest) -> Completion:
        """Answer a non-streaming request."""

    @abc.abstractmethod
    def stream(self, request: ChatRequest) -> AsyncIterator[Chunk | Usage]:
        """Answer a streaming request: chunks, then exactly one Usage, last."""

    @abc.abstractmethod
    async def health(self) -> bool:
        """A cheap liveness probe; never raises."""

    def error(self, what: str, *, retry_after_s: float | None = None) -> UpstreamError:
        """An UpstreamError whose message names this backend."""
        return UpstreamError(
            f"backend '{self.name}': {what}", retry_after_s=retry_after_s
        )

    def overloaded(self, what: str, *, retry_after_s: float) -> Overloaded:
        """An Overloaded for a backend that refused for capacity, for now."""
        return Overloaded(f"backend '{self.name}': {what}", retry_after_s=retry_after_s)

    def log_failure(self, request: ChatRequest, exc: MeldError) -> None:
        """One log line for a request this backend failed; messages hold no prompt."""
        log.warning(
            "backend=%s request_id=%s %s: %s",
            self.name,
            request.request_id,
            exc.type,
            exc.message,
        )

    def timeout(self, what: str) -> UpstreamTimeout:
        """An UpstreamTimeout whose message names this backend and its limit."""
        limit = self.config.request_timeout_s
        return UpstreamTimeout(f"backend '{self.name}': {what} within {limit:g} s")


def estimate_tokens(chars: int) -> int:
    """Tokens in `chars` characters of text, rounded up."""
    return -(-chars // CHARS_PER_TOKEN)


def text_chars(value: Any) -> int:
    """Characters of text in a message `content`: a string or a list of text parts."""
    if isinstance(value, str):
        return len(value)
    if isinstance(value, list):
        return sum(
            text_chars(part.get("text")) for part in value if isinstance(part, dict)
        )
    return 0


def prompt_chars(body: Mapping[str, Any]) -> int:
    """Characters of text in a chat request's messages, tool calls included."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return 0
    return sum(message_chars(m) for m in messages if isinstance(m, dict))


def message_chars(message: Mapping[str, Any]) -> int:
    """Characters of a message or delta: content, reasoning and tool call arguments."""
    chars = text_chars(message.get("content")) + text_chars(
        message.get("reasoning_content")
    )
    tool_calls = message.get("tool_calls")
    if isinstance(tool_calls, list):
        for call in tool_calls:
            function = call.get("function") if isinstance(call, dict) else None
            if isinstance(function, dict):
                chars += text_chars(function.get("arguments"))
    return chars


def wants_usage_chunk(body: Mapping[str, Any]) -> bool:
    """Whether the caller asked for OpenAI's final usage chunk in a stream."""
    options = body.get("stream_options")
    return isinstance(options, dict) and options.get("include_usage") is True


def usage_json(usage: Usage) -> dict[str, int]:
    """The OpenAI `usage` object of a Usage."""
    return {
        "prompt_tokens": usage.input_tokens,
        "completion_tokens": usage.output_tokens,
        "total_tokens": usage.input_tokens + usage.output_tokens,
    }
