"""The ledger's transactions as plain functions of a `sqlite3.Connection`.

Each runs inside the group-commit writer's savepoint, in the database thread; none of
them commits. An exception raised here undoes that op alone; `KeepWrites` keeps what
the op wrote before it refused.
"""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass

from .errors import (
    IdempotencyConflict,
    InsufficientCredits,
    InvalidRequest,
    MeldError,
    NotFound,
    PeerError,
    Unauthorized,
    UnknownPeer,
)
from .ledger_schema import ISSUED, REQUEST_COLUMNS, request_params
from .ledger_writer import KeepWrites
from .signing import CLOCK_SKEW_S, SignedRequest
from .types import Admission, Balance, RequestRecord, Transfer

log = logging.getLogger(__name__)

# Called in admission with the peer and its own limits (requests per minute, in
# flight; None for the node's default), read in the same statement as its money.
Gate = Callable[[str, tuple[int | None, int | None]], None]

NONCE_TTL_S = 600.0
IDEMPOTENCY_TTL_S = 24 * 3600.0
NODE_ACTOR = "node"
# Amounts and balances stay far below SQLite's 64-bit integers, which overflow into
# floating point instead of failing.
MAX_AMOUNT = 10**15
MAX_BALANCE = 10**18

# One row per live secret of an enabled peer, each carrying the peer's money, so
# admission reads everything it needs in one statement.
_ADMISSION = """
    SELECT s.secret, a.balance, h.balance, p.requests_per_minute, p.max_in_flight
    FROM peers p
    JOIN secrets s ON s.peer = p.id
    JOIN accounts a ON a.id = 'peer:' || p.id
    JOIN accounts h ON h.id = 'held:' || p.id
    WHERE p.id = ? AND p.enabled AND (s.expires_at IS NULL OR s.expires_at > ?)
"""
_BALANCES = """
    SELECT (SELECT balance FROM accounts WHERE id = ?),
           (SELECT balance FROM accounts WHERE id = ?)
"""
_INSERT_TRANSFER = """
    INSERT INTO transfers (kind, source, dest, amount, reason, actor, at, peer)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
"""


@dataclass(frozen=True, slots=True)
class Movement:
    """What a transfer needs besides its accounts and amount."""

    peer: str
    reason: str
    actor: str
    at: float


def spendable(peer: str) -> str:
    """The account holding what a peer can spend."""
    return f"peer:{peer}"


def escrow(peer: str) -> str:
    """The account holding a peer's open holds."""
    return f"held:{peer}"


def move(
    conn: sqlite3.Connection,
    kind: str,
    source: str,
    dest: str,
    amount: int,
    m: Movement,
) -> Transfer:
    """Write one transfer; the transfers_move trigger moves the balances."""
    try:
        cursor = conn.execute(
            _INSERT_TRANSFER,
            (kind, source, dest, amount, m.reason, m.actor, m.at, m.peer),
        )
    except sqlite3.IntegrityError as error:
        if "no_overdraft" in str(error):
            raise InsufficientCredits(f"{source} cannot cover {amount}") from None
        raise
    transfer_id = cursor.lastrowid
    assert transfer_id is not None
    return Transfer(transfer_id, kind, source, dest, amount, m.reason, m.actor, m.at)


def balance(conn: sqlite3.Connection, peer: str) -> Balance:
    """A peer's balance, held and available amounts."""
    available, held = conn.execute(
        _BALANCES, (spendable(peer), escrow(peer))
    ).fetchone()
    if available is None or held is None:
        raise UnknownPeer(f"no peer {peer!r}")
    return Balance(peer, available + held, held)


def require_peer(conn: sqlite3.Connection, peer: str) -> None:
    """Raise UnknownPeer unless the peer is registered."""
    if conn.execute("SELECT 1 FROM peers WHERE id = ?", (peer,)).fetchone() is None:
        raise UnknownPeer(f"no peer {peer!r}")


def admit(
    conn: sqlite3.Connection,
    signed: SignedRequest,
    *,
    now: float,
    hold: int,
    request_id: str,
    hold_ttl_s: float,
    gate: Gate | None,
    idempotency: tuple[str, str] | None,
    seen: dict[str, float],
) -> Admission:
    """Verify, spend the nonce, then gate, claim the idempotency key and hold.

    Args:
        seen: when each peer's `last_seen` was last written, shared across calls.
    """
    peer = signed.peer
    if abs(now - signed.timestamp) > CLOCK_SKEW_S:
        raise Unauthorized()
    live = conn.execute(_ADMISSION, (peer, now)).fetchall()
    if not live or not signed.verify(row[0] for row in live):
        raise Unauthorized()
    _, available, held, rpm, in_flight = live[0]
    spent = conn.execute(
        "INSERT OR IGNORE INTO nonces (peer, nonce, expires_at) VALUES (?, ?, ?)",
        (peer, signed.nonce, signed.timestamp + NONCE_TTL_S),
    )
    if spent.rowcount != 1:
        raise Unauthorized()
    # A busy peer would rewrite its row on every request; once a second is enough.
    if now - seen.get(peer, 0.0) >= 1.0:
        conn.execute("UPDATE peers SET last_seen = ? WHERE id = ?", (now, peer))
        seen[peer] = now

    # From here a refusal keeps the spent nonce (KeepWrites), so each step either
    # refuses before it writes or undoes its own writes.
    replay = None
    hold_id = None
    try:
        if gate is not None:
            gate(peer, (rpm, in_flight))
        if idempotency is not None:
            replay = claim_key(conn, peer, *idempotency, now)
        if replay is None and hold > available:
            raise InsufficientCredits(
                f"this request needs a hold of {hold} credit units;"
                f" {available} are available"
            )
        if replay is None and hold > 0:
            hold_id = place_hold(conn, peer, hold, request_id, now + hold_ttl_s, now)
    except InsufficientCredits as error:
        if idempotency is not None:
            forget_key(conn, peer, idempotency[0])
        raise KeepWrites(error) from None
    except MeldError as error:
        raise KeepWrites(error) from None

    # A hold moves money from available to held; the balance, their sum, stays.
    placed = hold if hold_id is not None else 0
    return Admission(peer, hold_id, placed, available + held, replay=replay)


def place_hold(
    conn: sqlite3.Connection,
    peer: str,
    amount: int,
    request_id: str,
    expires_at: float,
    now: float,
) -> int:
    """Open a hold; its trigger moves the amount into the peer's escrow, or fails."""
    try:
        cursor = conn.execute(
            "INSERT INTO holds (peer, amount, request_id, created_at, expires_at)"
            " VALUES (?, ?, ?, ?, ?)",
            (peer, amount, request_id, now, expires_at),
        )
    except sqlite3.IntegrityError as error:
        if "no_overdraft" not in str(error):
            raise
        raise InsufficientCredits(
            f"a hold of {amount} exceeds what is available"
        ) from None

    hold_id = cursor.lastrowid
    assert hold_id is not None
    return hold_id


def claim_key(
    conn: sqlite3.Connection, peer: str, key: str, body_sha256: str, now: float
) -> tuple[int, str, bytes] | None:
    """The stored answer to replay, or None after marking the key as in progress."""
    row = conn.execute(
        "SELECT body_sha256, state, status, content_type, body, created_at"
        " FROM idempotency WHERE peer = ? AND key = ?",
        (peer, key),
    ).fetchone()
    if row is not None and row[5] <= now - IDEMPOTENCY_TTL_S:
        conn.execute("DELETE FROM idempotency WHERE peer = ? AND key = ?", (peer, key))
        row = None
    if row is None:
        conn.execute(
            "INSERT INTO idempotency (peer, key, body_sha256, state, created_at)"
            " VALUES (?, ?, ?, 'pending', ?)",
            (peer, key, body_sha256, now),
        )
        return None
    sha, state, status, content_type, body, _ = row
    if sha != body_sha256:
        raise IdempotencyConflict("this Idempotency-Key was used with another body")
    if state == "pending":
        raise IdempotencyConflict(
            "a request with this Idempotency-Key is still in progress"
        )
    return int(status), str(content_type), bytes(body)


def resolve_hold(
    conn: sqlite3.Connection,
    hold_id: int,
    charge: int | None,
    *,
    now: float,
    reason: str,
) -> tuple[str, bool]:
    """Settle (charge given) or release a hold, exactly once.

    Returns the hold's peer and whether this call resolved it; a hold resolved
    before is left as it is. The holds_settle and holds_release triggers write the
    transfers, and holds_resolve_once refuses to touch a resolved hold at all.
    """
    found = conn.execute("SELECT peer, state FROM holds WHERE id = ?", (hold_id,))
    row = found.fetchone()
    if row is None:
        raise NotFound(f"no hold {hold_id}")
    peer, state = row
    if state != "open":
        log.warning("hold %s is already %s; left as it is", hold_id, state)
        return str(peer), False
    # Inside the batch's write transaction nothing can resolve it in between.
    resolution = "released" if charge is None else "settled"
    conn.execute(
        "UPDATE holds SET state = ?, charged = MIN(?, amount), resolution = ?,"
        " resolved_at = ? WHERE id = ?",
        (resolution, charge or 0, reason, now, hold_id),
    )
    return str(peer), True


def release_holds(
    conn: sqlite3.Connection, *, now: float, reason: str, expired: bool
) -> int:
    """Release every open hold, or only those past their expiry; returns how many."""
    cutoff = now if expired else float("inf")
    released = conn.execute(
        "UPDATE holds SET state = 'released', charged = 0, resolution = ?,"
        " resolved_at = ? WHERE state = 'open' AND expires_at <= ?",
        (reason, now, cutoff),
    ).rowcount
    if released:
        log.info("released %s open holds (%s)", released, reason)
    return released


def forget_key(conn: sqlite3.Connection, peer: str, key: str) -> None:
    """Drop an idempotency key whose request did not finish, so a retry may run."""
    conn.execute(
        "DELETE FROM idempotency WHERE peer = ? AND key = ? AND state = 'pending'",
        (peer, key),
    )


def forget_pending_keys(conn: sqlite3.Connection) -> int:
    """Drop every Idempotency-Key in progress; only at start, when none can be."""
    return conn.execute("DELETE FROM idempotency WHERE state = 'pending'").rowcount


def log_request(
    conn: sqlite3.Connection,
    record: RequestRecord | None,
    peer: str,
    *,
    done: tuple[str, int, str, bytes] | None = None,
    drop_key: str | None = None,
) -> None:
    """Write a request log row, and store or forget the request's idempotency key."""
    if record is not None:
        conn.execute(
            f"INSERT INTO requests ({REQUEST_COLUMNS})"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            request_params(record),
        )
    if done is not None:
        key, status, content_type, body = done
        stored = conn.execute(
            "UPDATE idempotency SET state = 'done', status = ?, content_type = ?,"
            " body = ? WHERE peer = ? AND key = ?",
            (status, content_type, body, peer, key),
        )
        if stored.rowcount != 1:
            log.warning("no pending idempotency key for peer %s; answer not kept", peer)
    if drop_key is not None:
        forget_key(conn, peer, drop_key)


def adjust(
    conn: sqlite3.Connection, kind: str, peer: str, amount: int, m: Movement
) -> Transfer:
    """A grant (from the node's issue account) or a deduct (back to it)."""
    require_peer(conn, peer)
    if kind == "grant":
        after = balance(conn, peer).balance + amount
        if after > MAX_BALANCE:
            raise InvalidRequest(
                f"a balance above {MAX_BALANCE} credit units is refused;"
                f" this grant would make {peer!r}'s {after}"
            )
        return move(conn, "grant", ISSUED, spendable(peer), amount, m)
    try:
        return move(conn, "deduct", spendable(peer), ISSUED, amount, m)
    except InsufficientCredits:
        available = balance(conn, peer).available
        raise InsufficientCredits(
            f"cannot deduct {amount} from {peer!r}: {available} are available"
        ) from None


def add_peer(
    conn: sqlite3.Connection,
    peer: str,
    secret: str,
    *,
    now: float,
    credits: int,
    actor: str,
    limits: tuple[int | None, int | None],
) -> None:
    """Register a peer with its accounts, its first secret and its opening grant."""
    try:
        conn.execute(
            "INSERT INTO peers (id, enabled, created_at, requests_per_minute,"
            " max_in_flight) VALUES (?, 1, ?, ?, ?)",
            (peer, now, *limits),
        )
    except sqlite3.IntegrityError:
        raise PeerError(f"peer {peer!r} already exists") from None
    conn.executemany(
        "INSERT INTO accounts (id, balance) VALUES (?, 0)",
        ((spendable(peer),), (escrow(peer),)),
    )
    conn.execute(
        "INSERT INTO secrets (peer, secret, created_at) VALUES (?, ?, ?)",
        (peer, secret, now),
    )
    audit(conn, now, actor, "add", peer, f"credits={credits}")
    if credits > 0:
        m = Movement(peer, "initial credits", actor, now)
        move(conn, "grant", ISSUED, spendable(peer), credits, m)


def rotate(
    conn: sqlite3.Connection,
    peer: str,
    secret: str,
    *,
    now: float,
    grace_s: float,
    actor: str,
) -> None:
    """Add a new secret and let the live old ones expire after the grace period."""
    require_peer(conn, peer)
    conn.execute(
        "UPDATE secrets SET expires_at = MIN(COALESCE(expires_at, ?1), ?1)"
        " WHERE peer = ?2 AND (expires_at IS NULL OR expires_at > ?3)",
        (now + grace_s, peer, now),
    )
    conn.execute(
        "INSERT INTO secrets (peer, secret, created_at) VALUES (?, ?, ?)",
        (peer, secret, now),
    )
    audit(conn, now, actor, "rotate", peer, f"grace_s={grace_s:g}")


def audit(
    conn: sqlite3.Connection,
    now: float,
    actor: str,
    action: str,
    peer: str,
    detail: str,
) -> None:
    """One row of the administrative audit trail."""
    conn.execute(
        "INSERT INTO audit (at, actor, action, peer, detail) VALUES (?, ?, ?, ?, ?)",
        (now, actor, action, peer, detail),
    )
