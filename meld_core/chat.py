"""The shape of a chat completion request and of what the node answers with."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from .errors import InvalidRequest

ROLES = frozenset({"system", "user", "assistant", "tool", "developer", "function"})


@dataclass(frozen=True, slots=True)
class ChatCall:
    """The fields of a chat request the node acts on, checked for form."""

    model: str
    stream: bool
    max_tokens: int | None
    body: dict[str, Any]


def parse_chat(raw: bytes) -> ChatCall:
    """A checked chat request from a raw body; InvalidRequest names what is wrong."""
    try:
        body = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidRequest(f"body is not valid JSON: {exc}") from None
    except RecursionError:
        raise InvalidRequest("body is not valid JSON: nested too deeply") from None
    except ValueError as exc:
        # Python refuses to parse a number of more than 4,300 digits.
        raise InvalidRequest(f"body is not valid JSON: {exc}") from None
    if not isinstance(body, dict):
        raise InvalidRequest("body must be a JSON object")

    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise InvalidRequest("'model' must be a non-empty string")
    _check_messages(body.get("messages"))
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise InvalidRequest("'stream' must be true or false")
    max_tokens = _max_tokens(body)
    n = body.get("n", 1)
    if n != 1 or isinstance(n, bool):
        raise InvalidRequest("'n' must be 1: a node answers one choice per request")
    return ChatCall(model, stream, max_tokens, body)


def _check_messages(messages: Any) -> None:
    if not isinstance(messages, list) or not messages:
        raise InvalidRequest("'messages' must be a non-empty list")
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise InvalidRequest(f"messages[{i}] must be an object")
        if message.get("role") not in ROLES:
            raise InvalidRequest(f"messages[{i}].role must be one of {sorted(ROLES)}")
        content = message.get("content")
        if content is not None and not isinstance(content, str | list):
            raise InvalidRequest(f"messages[{i}].content must be a string or a list")


def _max_tokens(body: dict[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if value is None:
            continue
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise InvalidRequest(f"'{key}' must be a whole number of at least 1")
        return value
    return None


def sse(data: Any, event: str | None = None) -> bytes:
    """One server-sent event; `data` is JSON-encoded unless it is already a string."""
    text = data if isinstance(data, str) else json.dumps(data, separators=(",", ":"))
    prefix = f"event: {event}\n" if event else ""
    return f"{prefix}data: {text}\n\n".encode()
