"""Request signing exactly as PROTOCOL section 2 writes it."""

from __future__ import annotations

import hashlib
import hmac

import httpx
import pytest

from meld_core.signing import (
    SECRET_PATTERN,
    MeldAuth,
    new_secret,
    parse_signed,
    signed_headers,
    string_to_sign,
)

SECRET = "msk_" + "A" * 43
NOW = 1_760_000_000


def test_string_to_sign_is_seven_lines_without_a_final_newline() -> None:
    text = string_to_sign("agent-1", "1700000000", "n" * 16, "post", "/v1/x?a=1", b"{}")
    lines = text.split("\n")
    assert lines == [
        "MELD1-HMAC-SHA256",
        "agent-1",
        "1700000000",
        "n" * 16,
        "POST",
        "/v1/x?a=1",
        hashlib.sha256(b"{}").hexdigest(),
    ]


def test_signature_is_hmac_sha256_keyed_by_the_whole_secret() -> None:
    headers = signed_headers(
        "agent-1", SECRET, "GET", "/v1/models", b"", now=NOW, nonce="abcdefghijklmnop"
    )
    message = string_to_sign(
        "agent-1", str(NOW), "abcdefghijklmnop", "GET", "/v1/models", b""
    )
    expected = hmac.new(SECRET.encode(), message.encode(), hashlib.sha256).hexdigest()
    assert headers["X-Meld-Signature"] == "v1=" + expected


def test_new_secrets_match_the_protocol_form_and_differ() -> None:
    first, second = new_secret(), new_secret()
    assert SECRET_PATTERN.fullmatch(first) and first != second


def _parse(
    headers: dict[str, str],
    body: bytes = b"",
    target: str = "/v1/models",
    now: float = NOW,
):
    lower = {k.lower(): v for k, v in headers.items()}
    return parse_signed(lower.get, "GET", target, body, now=now)


@pytest.mark.parametrize(
    "header, value",
    [
        ("X-Meld-Peer", "Bad Peer"),
        ("X-Meld-Timestamp", "12a"),
        ("X-Meld-Timestamp", "1" * 5000),
        ("X-Meld-Nonce", "short"),
        ("X-Meld-Signature", "v2=" + "0" * 64),
        ("X-Meld-Signature", "v1=" + "G" * 64),
    ],
)
def test_malformed_headers_are_refused_before_any_lookup(
    header: str, value: str
) -> None:
    headers = signed_headers("agent-1", SECRET, "GET", "/v1/models", b"", now=NOW)
    headers[header] = value
    assert _parse(headers) is None


def test_a_timestamp_beyond_five_minutes_is_refused() -> None:
    headers = signed_headers("agent-1", SECRET, "GET", "/v1/models", b"", now=NOW)
    assert _parse(headers, now=NOW + 299) is not None
    assert _parse(headers, now=NOW + 301) is None


@pytest.mark.parametrize("part", ["body", "target", "secret"])
def test_tampering_with_any_signed_element_fails_verification(part: str) -> None:
    body, target, secret = b'{"a":1}', "/v1/models", SECRET
    headers = signed_headers("agent-1", SECRET, "GET", target, body, now=NOW)
    if part == "body":
        body = b'{"a":2}'
    elif part == "target":
        target = "/v1/models?x=1"
    else:
        secret = new_secret()
    signed = _parse(headers, body, target)
    assert signed is not None
    assert signed.verify([secret]) is False


def test_any_live_secret_verifies_during_rotation() -> None:
    headers = signed_headers("agent-1", SECRET, "GET", "/v1/models", b"", now=NOW)
    signed = _parse(headers)
    assert signed is not None and signed.verify([new_secret(), SECRET])


def test_meld_auth_signs_the_raw_target_and_drops_bearer_tokens() -> None:
    auth = MeldAuth("agent-1", SECRET)
    request = httpx.Request(
        "POST",
        "http://node/v1/chat/completions?b=%20x",
        content=b"{}",
        headers={"Authorization": "Bearer sk-stray"},
    )
    signed_request = next(auth.auth_flow(request))
    assert "Authorization" not in signed_request.headers
    lower = {k.lower(): v for k, v in signed_request.headers.items()}
    import time

    signed = parse_signed(
        lower.get, "POST", "/v1/chat/completions?b=%20x", b"{}", now=time.time()
    )
    assert signed is not None and signed.verify([SECRET])
    assert SECRET not in repr(auth)
