"""Parsing a chat completion request's body."""

from __future__ import annotations

import pytest

from meld_core.chat import parse_chat
from meld_core.errors import InvalidRequest


@pytest.mark.parametrize(
    "raw",
    [
        b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}",
        b'{"model":"m","messages":[],"max_tokens":' + b"9" * 5000 + b"}",
        b"\xff\xfe",
    ],
    ids=["nested-too-deeply", "number-of-5000-digits", "not-utf8"],
)
def test_a_body_json_cannot_parse_is_invalid_request(raw: bytes) -> None:
    with pytest.raises(InvalidRequest, match="not valid JSON"):
        parse_chat(raw)
