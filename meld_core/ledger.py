"""The credit ledger of PROTOCOL section 4: peers, secrets, nonces, holds and transfers.

One SQLite file in WAL mode, shared with the command line running in another process.
Every write goes through a group-commit writer (`ledger_writer`); the transactions
themselves are plain functions in `ledger_ops`.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import aiosqlite

from . import ledger_ops as ops
from .errors import InvalidRequest, PeerError, Unavailable, UnknownPeer
from .ledger_schema import (
    PEER_COLUMNS,
    PEER_JOINS,
    REQUEST_COLUMNS,
    TRANSFER_COLUMNS,
    connect_file,
    create_schema,
    invariant_problems,
    peer_record,
    request_record,
    transfer,
)
from .ledger_writer import GroupCommitWriter
from .signing import SECRET_PATTERN, SignedRequest, is_valid_id
from .types import Admission, Balance, PeerRecord, RequestRecord, Transfer

log = logging.getLogger(__name__)

__all__ = ["Ledger"]


class Ledger:
    """The node's credit ledger over one SQLite file.

    Unknown peers raise `errors.UnknownPeer`, a `PeerError` answered as 404.
    """

    def __init__(
        self, path: Path, db: aiosqlite.Connection, clock: Callable[[], float]
    ) -> None:
        self.path = path
        self._db = db
        self._clock = clock
        self._writer = GroupCommitWriter(db)
        self._seen: dict[str, float] = {}

    @classmethod
    async def open(
        cls, path: Path, *, clock: Callable[[], float] = time.time
    ) -> Ledger:
        """Open (creating if need be) the ledger file at `path`."""
        path = Path(path).expanduser()
        db = aiosqlite.Connection(partial(connect_file, path), 64)
        await db
        ledger = cls(path, db, clock)
        try:
            await ledger._writer.run(create_schema)
        except BaseException:
            await ledger.close()
            raise
        log.info("ledger open at %s", path)
        return ledger

    async def close(self) -> None:
        """Commit what is queued, stop the writer and close the file."""
        await self._writer.close()
        await self._db.close()

    async def __aenter__(self) -> Ledger:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def admit(
        self,
        signed: SignedRequest,
        *,
        hold: int = 0,
        request_id: str = "",
        hold_ttl_s: float = 600.0,
        gate: ops.Gate | None = None,
        idempotency: tuple[str, str] | None = None,
    ) -> Admission:
        """Verify a signed request, spend its nonce and place its hold, in one op.

        Args:
            gate: called with the peer id and its own limits after the nonce is
                spent, in the database thread; it refuses by raising a MeldError.
            idempotency: the request's Idempotency-Key and body SHA-256.
        """
        if hold < 0:
            raise InvalidRequest("a hold cannot be negative")
        _check_amount("a hold", hold)
        op = partial(
            ops.admit,
            signed=signed,
            now=self._clock(),
            hold=hold,
            request_id=request_id,
            hold_ttl_s=hold_ttl_s,
            gate=gate,
            idempotency=idempotency,
            seen=self._seen,
        )
        # A caller that leaves while queued must not leave its hold behind.
        return await self._writer.run(op, orphaned=self._release_orphan)

    async def settle(
        self,
        hold_id: int,
        amount: int,
        *,
        record: RequestRecord | None = None,
        idempotency: tuple[str, int, str, bytes] | None = None,
    ) -> Balance:
        """Charge up to the held amount, release the rest, log the request.

        A hold resolved before changes nothing; the current balance is returned.

        Args:
            idempotency: key, status, content type and body of the answer to keep.
        """
        if amount < 0:
            raise InvalidRequest("a charge cannot be negative")
        # A hold caps every charge anyway; this keeps a wild usage report bindable.
        amount = min(amount, ops.MAX_AMOUNT)
        now = self._clock()

        def op(conn: sqlite3.Connection) -> Balance:
            peer, resolved = ops.resolve_hold(
                conn, hold_id, amount, now=now, reason="unused hold"
            )
            if resolved:
                ops.log_request(conn, record, peer, done=idempotency)
            return ops.balance(conn, peer)

        return await self._writer.run(op)

    async def finish(
        self,
        peer: str,
        hold_id: int | None,
        charge: int,
        *,
        record: RequestRecord,
        keep: Callable[[Balance], tuple[str, int, str, bytes]] | None = None,
    ) -> Balance:
        """Settle a served request's hold, log it and keep its answer, in one op.

        A crash then keeps all three or none: a retry with the request's
        Idempotency-Key replays the answer, or runs again, and is charged once.

        Args:
            hold_id: None for a request that held nothing (a free model).
            keep: makes, from the balance after the charge, the Idempotency-Key
                and the answer (status, content type, body) to keep for it.
                Runs in the database thread.
        """
        if charge < 0:
            raise InvalidRequest("a charge cannot be negative")
        charge = min(charge, ops.MAX_AMOUNT)
        now = self._clock()

        def op(conn: sqlite3.Connection) -> Balance:
            who, resolved = peer, True
            if hold_id is not None:
                who, resolved = ops.resolve_hold(
                    conn, hold_id, charge, now=now, reason="unused hold"
                )
            after = ops.balance(conn, who)
            if resolved:
                done = keep(after) if keep is not None else None
                ops.log_request(conn, record, who, done=done)
            return after

        return await self._writer.run(op)

    async def release(
        self,
        hold_id: int,
        *,
        record: RequestRecord | None = None,
        idempotency_key: str | None = None,
        reason: str = "request failed",
    ) -> Balance:
        """Release a hold in full, log the request and forget its idempotency key."""
        now = self._clock()

        def op(conn: sqlite3.Connection) -> Balance:
            peer, resolved = ops.resolve_hold(
                conn, hold_id, None, now=now, reason=reason
            )
            if resolved:
                ops.log_request(conn, record, peer, drop_key=idempotency_key)
            return ops.balance(conn, peer)

        return await self._writer.run(op)

    async def record(
        self,
        record: RequestRecord,
        *,
        idempotency: tuple[str, int, str, bytes] | None = None,
        drop_idempotency_key: str | None = None,
    ) -> None:
        """Log a request that held nothing, keeping or forgetting its answer."""
        op = partial(
            ops.log_request,
            record=record,
            peer=record.peer,
            done=idempotency,
            drop_key=drop_idempotency_key,
        )
        await self._writer.run(op)

    async def release_stale_holds(self, *, reason: str = "node restart") -> int:
        """Release every open hold and forget every Idempotency-Key still in
        progress, as a crash left them; returns how many holds.

        Only the node that holds the ledger's lock may call this: the requests
        behind those holds and keys must be gone, not running elsewhere.
        """
        now = self._clock()

        def op(conn: sqlite3.Connection) -> int:
            ops.forget_pending_keys(conn)
            return ops.release_holds(conn, now=now, reason=reason, expired=False)

        return await self._writer.run(op)

    async def release_expired_holds(self) -> int:
        """Release the open holds past their expiry; returns how many."""
        now = self._clock()
        op = partial(ops.release_holds, now=now, reason="hold expired", expired=True)
        return await self._writer.run(op)

    async def prune(self) -> None:
        """Forget expired nonces and idempotency keys older than 24 hours."""
        now = self._clock()

        def op(conn: sqlite3.Connection) -> None:
            conn.execute("DELETE FROM nonces WHERE expires_at <= ?", (now,))
            conn.execute(
                "DELETE FROM idempotency WHERE created_at <= ?",
                (now - ops.IDEMPOTENCY_TTL_S,),
            )

        await self._writer.run(op)

    async def grant(
        self, peer: str, amount: int, *, reason: str, actor: str
    ) -> Transfer:
        """Issue credit units to a peer."""
        return await self._adjust("grant", peer, amount, reason, actor)

    async def deduct(
        self, peer: str, amount: int, *, reason: str, actor: str
    ) -> Transfer:
        """Take credit units back from a peer; refused beyond what is available."""
        return await self._adjust("deduct", peer, amount, reason, actor)

    async def balance(self, peer: str) -> Balance:
        """A peer's balance, held and available amounts."""
        return await self._writer.read(partial(ops.balance, peer=peer))

    async def transfers(self, peer: str, *, limit: int = 20) -> list[Transfer]:
        """A peer's latest transfers, newest first."""

        def read(conn: sqlite3.Connection) -> list[Transfer]:
            ops.require_peer(conn, peer)
            rows = conn.execute(
                f"SELECT {TRANSFER_COLUMNS} FROM transfers WHERE peer = ?"
                " ORDER BY id DESC LIMIT ?",
                (peer, limit),
            )
            return [transfer(row) for row in rows]

        return await self._writer.read(read)

    async def add_peer(
        self,
        peer: str,
        secret: str,
        *,
        credits: int = 0,
        actor: str,
        requests_per_minute: int | None = None,
        max_in_flight: int | None = None,
    ) -> PeerRecord:
        """Register a peer with its first secret and, if any, its initial credits."""
        if not is_valid_id(peer):
            raise PeerError(f"not a valid peer id: {peer!r}")
        if not SECRET_PATTERN.fullmatch(secret):
            raise PeerError("not a valid peer secret")
        if credits < 0:
            raise InvalidRequest("initial credits cannot be negative")
        _check_amount("initial credits", credits)
        _check_limits(requests_per_minute, max_in_flight)
        op = partial(
            ops.add_peer,
            peer=peer,
            secret=secret,
            now=self._clock(),
            credits=credits,
            actor=actor,
            limits=(requests_per_minute, max_in_flight),
        )
        await self._writer.run(op)
        log.info("peer %s added by %s with %s credits", peer, actor, credits)
        return await self.peer(peer)

    async def rotate_peer(
        self, peer: str, secret: str, *, grace_s: float = 3600.0, actor: str
    ) -> None:
        """Give a peer a new secret; the old ones verify for `grace_s` more."""
        if not SECRET_PATTERN.fullmatch(secret):
            raise PeerError("not a valid peer secret")
        if grace_s < 0:
            raise InvalidRequest("the grace period cannot be negative")
        op = partial(
            ops.rotate,
            peer=peer,
            secret=secret,
            now=self._clock(),
            grace_s=grace_s,
            actor=actor,
        )
        await self._writer.run(op)
        log.info("peer %s secret rotated by %s", peer, actor)

    async def set_peer_enabled(self, peer: str, enabled: bool, *, actor: str) -> None:
        """Enable or disable a peer; a disabled peer's requests are unauthorized."""
        now = self._clock()

        def op(conn: sqlite3.Connection) -> None:
            ops.require_peer(conn, peer)
            conn.execute(
                "UPDATE peers SET enabled = ? WHERE id = ?", (int(enabled), peer)
            )
            action = "enable" if enabled else "disable"
            ops.audit(conn, now, actor, action, peer, "")

        await self._writer.run(op)
        log.info("peer %s %s by %s", peer, "enabled" if enabled else "disabled", actor)

    async def set_peer_limits(
        self, peer: str, *, requests_per_minute: int | None, max_in_flight: int | None
    ) -> None:
        """Set a peer's own limits; None falls back to the node's `[limits]`."""
        _check_limits(requests_per_minute, max_in_flight)

        def op(conn: sqlite3.Connection) -> None:
            ops.require_peer(conn, peer)
            conn.execute(
                "UPDATE peers SET requests_per_minute = ?, max_in_flight = ?"
                " WHERE id = ?",
                (requests_per_minute, max_in_flight, peer),
            )

        await self._writer.run(op)

    async def peer(self, peer: str) -> PeerRecord:
        """One peer with its money, its limits and its requests in the last hour."""
        records = await self._writer.read(partial(self._peer_records, peer=peer))
        if not records:
            raise UnknownPeer(f"no peer {peer!r}")
        return records[0]

    async def peers(self) -> list[PeerRecord]:
        """Every peer, by id."""
        return await self._writer.read(partial(self._peer_records, peer=None))

    async def requests(self, *, limit: int = 50) -> list[RequestRecord]:
        """The latest entries of the request log, newest first."""

        def read(conn: sqlite3.Connection) -> list[RequestRecord]:
            rows = conn.execute(
                f"SELECT {REQUEST_COLUMNS} FROM requests ORDER BY id DESC LIMIT ?",
                (limit,),
            )
            return [request_record(row) for row in rows]

        return await self._writer.read(read)

    async def totals(self) -> dict[str, int]:
        """The balance of every account, by account id."""

        def read(conn: sqlite3.Connection) -> dict[str, int]:
            rows = conn.execute("SELECT id, balance FROM accounts ORDER BY id")
            return {str(account): int(amount) for account, amount in rows}

        return await self._writer.read(read)

    async def check_invariants(self) -> None:
        """Raise RuntimeError if the books do not balance; reads every transfer."""
        problems = await self._writer.read(invariant_problems)
        if problems:
            raise RuntimeError("ledger invariants broken: " + "; ".join(problems))

    async def _adjust(
        self, kind: str, peer: str, amount: int, reason: str, actor: str
    ) -> Transfer:
        if isinstance(amount, bool) or not isinstance(amount, int) or amount <= 0:
            raise InvalidRequest(f"a {kind} needs a positive whole amount")
        _check_amount(f"a {kind}", amount)
        if not reason.strip():
            raise InvalidRequest(f"a {kind} needs a reason")
        m = ops.Movement(peer, reason, actor, self._clock())
        made = await self._writer.run(
            partial(ops.adjust, kind=kind, peer=peer, amount=amount, m=m)
        )
        log.info("%s of %s to peer %s by %s: %s", kind, amount, peer, actor, reason)
        return made

    def _peer_records(
        self, conn: sqlite3.Connection, peer: str | None
    ) -> list[PeerRecord]:
        since = self._clock() - 3600.0
        counts = dict(
            conn.execute(
                "SELECT peer, COUNT(*) FROM requests WHERE at > ? GROUP BY peer",
                (since,),
            ).fetchall()
        )
        query = f"SELECT {PEER_COLUMNS} {PEER_JOINS}"
        params: tuple[Any, ...] = ()
        if peer is not None:
            query += " WHERE p.id = ?"
            params = (peer,)
        rows = conn.execute(query + " ORDER BY p.id", params).fetchall()
        return [peer_record(row, int(counts.get(row[0], 0))) for row in rows]

    def _release_orphan(self, admission: Admission) -> None:
        hold_id = admission.hold_id
        if hold_id is None:
            return
        op = partial(
            ops.resolve_hold,
            hold_id=hold_id,
            charge=None,
            now=self._clock(),
            reason="caller disconnected",
        )
        try:
            released = self._writer.submit(op)
        except Unavailable:
            log.warning("hold %s stays open until the next start releases it", hold_id)
            return
        log.info("caller left before hold %s was placed; releasing it", hold_id)
        released.add_done_callback(_consume)


def _check_amount(what: str, amount: int) -> None:
    if amount > ops.MAX_AMOUNT:
        raise InvalidRequest(
            f"{what} of {amount} is over the limit of {ops.MAX_AMOUNT} credit units"
        )


def _check_limits(requests_per_minute: int | None, max_in_flight: int | None) -> None:
    for name, value in (
        ("requests_per_minute", requests_per_minute),
        ("max_in_flight", max_in_flight),
    ):
        if value is not None and value < 1:
            raise InvalidRequest(f"{name} must be at least 1")


def _consume(future: asyncio.Future[Any]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("releasing an orphaned hold failed: %r", future.exception())
