"""HMAC request signing of PROTOCOL section 2, for both the node and its callers."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import time
from collections.abc import Callable, Generator, Iterable
from dataclasses import dataclass

import httpx

SCHEME = "MELD1-HMAC-SHA256"
ID_PATTERN = re.compile(r"[a-z0-9][a-z0-9._-]{0,62}")
NONCE_PATTERN = re.compile(r"[A-Za-z0-9_-]{16,64}")
SIGNATURE_PATTERN = re.compile(r"v1=[0-9a-f]{64}")
SECRET_PATTERN = re.compile(r"msk_[A-Za-z0-9_-]{43}")
CLOCK_SKEW_S = 300
# Far more than a Unix time in seconds needs, far fewer than int() refuses.
MAX_TIMESTAMP_DIGITS = 20
EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()


def is_valid_id(value: str) -> bool:
    """Whether a node or peer id matches the protocol's pattern."""
    return ID_PATTERN.fullmatch(value) is not None


def new_secret() -> str:
    """A fresh peer secret: `msk_` and 43 base64url characters."""
    return "msk_" + secrets.token_urlsafe(32)


def new_nonce() -> str:
    """A fresh nonce of 22 base64url characters."""
    return secrets.token_urlsafe(16)


def string_to_sign(
    peer: str, timestamp: str, nonce: str, method: str, target: str, body: bytes
) -> str:
    """The seven lines that the signature covers, joined by newlines."""
    digest = hashlib.sha256(body).hexdigest() if body else EMPTY_SHA256
    return "\n".join((SCHEME, peer, timestamp, nonce, method.upper(), target, digest))


def sign(secret: str, message: str) -> str:
    """The `X-Meld-Signature` value for a string to sign."""
    mac = hmac.new(secret.encode(), message.encode(), hashlib.sha256)
    return "v1=" + mac.hexdigest()


def signed_headers(
    peer: str,
    secret: str,
    method: str,
    target: str,
    body: bytes,
    *,
    now: float | None = None,
    nonce: str | None = None,
) -> dict[str, str]:
    """The four headers that sign one request."""
    timestamp = str(int(time.time() if now is None else now))
    nonce = nonce or new_nonce()
    message = string_to_sign(peer, timestamp, nonce, method, target, body)
    return {
        "X-Meld-Peer": peer,
        "X-Meld-Timestamp": timestamp,
        "X-Meld-Nonce": nonce,
        "X-Meld-Signature": sign(secret, message),
    }


@dataclass(frozen=True, slots=True)
class SignedRequest:
    """The signed parts of a request, checked for form but not yet verified."""

    peer: str
    timestamp: int
    nonce: str
    signature: str
    message: str

    def verify(self, candidate_secrets: Iterable[str]) -> bool:
        """Whether any of the peer's live secrets made this signature."""
        ok = False
        for secret in candidate_secrets:
            # Check every secret so timing does not reveal which one matched.
            ok |= hmac.compare_digest(sign(secret, self.message), self.signature)
        return ok


def parse_signed(
    headers: Callable[[str], str | None],
    method: str,
    target: str,
    body: bytes,
    *,
    now: float | None = None,
) -> SignedRequest | None:
    """The signed parts of a request, or None when any header is absent or malformed.

    Args:
        headers: looks up a header by name, case-insensitively.
    """
    peer = headers("x-meld-peer") or ""
    timestamp = headers("x-meld-timestamp") or ""
    nonce = headers("x-meld-nonce") or ""
    signature = headers("x-meld-signature") or ""
    if not (is_valid_id(peer) and timestamp.isascii() and timestamp.isdigit()):
        return None
    if len(timestamp) > MAX_TIMESTAMP_DIGITS:
        return None
    if not (NONCE_PATTERN.fullmatch(nonce) and SIGNATURE_PATTERN.fullmatch(signature)):
        return None
    clock = time.time() if now is None else now
    if abs(clock - int(timestamp)) > CLOCK_SKEW_S:
        return None
    message = string_to_sign(peer, timestamp, nonce, method, target, body)
    return SignedRequest(peer, int(timestamp), nonce, signature, message)


class MeldAuth(httpx.Auth):
    """Signs every request of an httpx client as one peer of a MELD node.

    Works with any httpx-based client, the OpenAI Python SDK included
    (`OpenAI(http_client=httpx.Client(auth=MeldAuth(...)))`).
    """

    requires_request_body = True

    def __init__(self, peer: str, secret: str) -> None:
        if not is_valid_id(peer):
            raise ValueError(f"not a valid peer id: {peer!r}")
        self.peer = peer
        self._secret = secret

    def __repr__(self) -> str:
        return f"MeldAuth(peer={self.peer!r})"

    def auth_flow(
        self, request: httpx.Request
    ) -> Generator[httpx.Request, httpx.Response, None]:
        target = request.url.raw_path.decode("ascii")
        headers = signed_headers(
            self.peer, self._secret, request.method, target, request.content
        )
        request.headers.update(headers)
        # The OpenAI SDK sends its own bearer token; a node ignores it, so drop it
        # rather than hand a stray credential to whatever sits in between.
        request.headers.pop("Authorization", None)
        yield request
