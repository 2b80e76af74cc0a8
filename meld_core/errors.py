"""The one exception family of the node; each error knows its HTTP status and type."""

from __future__ import annotations

from typing import Any


class MeldError(Exception):
    """Base of every error the node answers with; carries a status and protocol type."""

    status: int = 500
    type: str = "internal_error"

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.retry_after_s = retry_after_s

    def to_body(self) -> dict[str, Any]:
        """The JSON body of PROTOCOL section 6."""
        error: dict[str, Any] = {"type": self.type, "message": self.message}
        body: dict[str, Any] = {"error": error}
        if self.retry_after_s is not None:
            body["retry_after_s"] = round(self.retry_after_s, 3)
        return body


class InvalidRequest(MeldError):
    status, type = 400, "invalid_request"


class Unauthorized(MeldError):
    status, type = 401, "unauthorized"

    def __init__(self, message: str = "request signature rejected") -> None:
        super().__init__(message)


class InsufficientCredits(MeldError):
    status, type = 402, "insufficient_credits"


class NotFound(MeldError):
    status, type = 404, "not_found"


class ModelNotFound(MeldError):
    status, type = 404, "model_not_found"


class MethodNotAllowed(MeldError):
    status, type = 405, "method_not_allowed"


class IdempotencyConflict(MeldError):
    status, type = 409, "idempotency_conflict"


class PayloadTooLarge(MeldError):
    status, type = 413, "payload_too_large"


class Overloaded(MeldError):
    status, type = 429, "overloaded"


class RateLimited(MeldError):
    status, type = 429, "rate_limited"


class UpstreamError(MeldError):
    status, type = 502, "upstream_error"


class QueueTimeout(MeldError):
    status, type = 503, "queue_timeout"


class Unavailable(MeldError):
    status, type = 503, "unavailable"


class UpstreamTimeout(MeldError):
    status, type = 504, "upstream_timeout"


class ConfigError(MeldError):
    """A configuration file that cannot be used; names the file and the key."""

    type = "config_error"


class PeerError(MeldError):
    """An administrative command on a peer that cannot be carried out."""

    status, type = 400, "invalid_request"


class UnknownPeer(PeerError):
    """An administrative command names a peer the ledger does not know."""

    status, type = 404, "not_found"


class StartError(MeldError):
    """The node cannot start: its address is taken, or its server failed to start."""

    type = "start_error"
