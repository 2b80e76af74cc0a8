"""Backends: the model servers the node forwards admitted requests to."""

from __future__ import annotations

from ..config import BackendConfig
from ..errors import ConfigError
from .base import Backend, ChatRequest, Chunk, Completion, Usage
from .ollama import OllamaBackend
from .openai import OpenAIBackend
from .sim import SimBackend

__all__ = [
    "Backend",
    "ChatRequest",
    "Chunk",
    "Completion",
    "OllamaBackend",
    "OpenAIBackend",
    "SimBackend",
    "Usage",
    "create_backend",
]

_KINDS: dict[str, type[Backend]] = {
    OllamaBackend.kind: OllamaBackend,
    OpenAIBackend.kind: OpenAIBackend,
    SimBackend.kind: SimBackend,
}


def create_backend(config: BackendConfig) -> Backend:
    """The backend of `config.kind`, not yet started."""
    try:
        kind = _KINDS[config.kind]
    except KeyError:
        raise ConfigError(
            f"backend '{config.name}': unknown kind '{config.kind}'"
        ) from None
    return kind(config)
