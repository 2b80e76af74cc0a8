"""A backend for Ollama, through its OpenAI-compatible endpoint."""

from __future__ import annotations

from .openai import OpenAIBackend


class OllamaBackend(OpenAIBackend):
    """Forwards chat requests to an Ollama server's `/v1/chat/completions`."""

    kind = "ollama"

    @property
    def root_url(self) -> str:
        # Operators often paste the OpenAI-style URL; both spellings mean one server.
        return self.config.base_url.removesuffix("/v1")

    @property
    def chat_url(self) -> str:
        return f"{self.root_url}/v1/chat/completions"

    @property
    def health_url(self) -> str:
        return f"{self.root_url}/api/tags"
