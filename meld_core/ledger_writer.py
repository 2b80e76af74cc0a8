"""Group commit: many callers' ledger operations share one transaction and one fsync."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from collections.abc import Callable
from typing import Any, TypeVar, cast

import aiosqlite

from .errors import MeldError, Unavailable

log = logging.getLogger(__name__)

T = TypeVar("T")
Op = Callable[[sqlite3.Connection], T]

MAX_BATCH = 256
_BUSY_CODES = (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)


class KeepWrites(Exception):
    """Raised by an op that refuses its caller but whose writes so far must commit.

    Admission spends a nonce even when a later step refuses the request.
    """

    def __init__(self, error: MeldError) -> None:
        super().__init__(error.message)
        self.error = error


def is_busy(error: BaseException) -> bool:
    """Whether an error means another connection holds the write lock."""
    code = getattr(error, "sqlite_errorcode", None)
    return isinstance(error, sqlite3.OperationalError) and (
        code is not None and code & 0xFF in _BUSY_CODES
    )


class _Queued:
    """One queued operation, the future its caller awaits, and what to do if it left."""

    __slots__ = ("future", "op", "orphaned")

    def __init__(
        self,
        op: Op[Any],
        future: asyncio.Future[Any],
        orphaned: Callable[[Any], None] | None,
    ) -> None:
        self.op = op
        self.future = future
        self.orphaned = orphaned

    def deliver(self, ok: bool, value: Any) -> None:
        if not self.future.done():
            if ok:
                self.future.set_result(value)
            else:
                self.future.set_exception(value)
        elif ok and self.orphaned is not None:
            try:
                self.orphaned(value)
            except Exception:
                # The writer must outlive any one caller's clean-up.
                log.exception("clean-up after a departed caller failed")


class GroupCommitWriter:
    """Runs queued operations in batches: one thread hop, one transaction per batch.

    Each caller's future resolves only after the COMMIT of the batch that held its
    operation, so an awaited write is durable when the await returns.
    """

    def __init__(self, db: aiosqlite.Connection, *, max_batch: int = MAX_BATCH) -> None:
        self._db = db
        self._max_batch = max_batch
        self._pending: list[_Queued] = []
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task = asyncio.create_task(self._drain(), name="ledger-writer")
        self.batches = 0
        self.ops = 0
        self.retries = 0

    def submit(
        self, op: Op[T], *, orphaned: Callable[[T], None] | None = None
    ) -> asyncio.Future[T]:
        """Queue one operation; its future holds what it returned or raised.

        Cancelling the future does not take the operation back: once queued it
        commits, and `orphaned` then gets the result nobody is waiting for.
        """
        if self._closing:
            raise Unavailable("the ledger is closed")
        future: asyncio.Future[T] = asyncio.get_running_loop().create_future()
        self._pending.append(_Queued(op, future, orphaned))
        self._wakeup.set()
        return future

    async def run(self, op: Op[T], *, orphaned: Callable[[T], None] | None = None) -> T:
        """Queue one operation and wait until its batch commits."""
        return await self.submit(op, orphaned=orphaned)

    async def read(self, fn: Op[T]) -> T:
        """Run a read-only function in one hop, inside one read transaction."""
        return cast(T, await self._hop(self._read, fn))

    async def close(self) -> None:
        """Commit what is queued, then stop."""
        self._closing = True
        self._wakeup.set()
        await self._task

    async def _hop(self, fn: Callable[..., Any], *args: Any) -> Any:
        # Every await on aiosqlite's public API is a hop to its thread and back,
        # about 0.1 ms; a batch of a few hundred statements would pay that per
        # statement. `_execute` is private, but every public method is built on
        # it and it has kept its shape for years: it runs a whole batch in one hop.
        return await self._db._execute(fn, *args)  # type: ignore[no-untyped-call]

    async def _drain(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                await self._commit(batch)
            if self._closing:
                return

    async def _commit(self, batch: list[_Queued]) -> None:
        ops = [queued.op for queued in batch]
        delay = 0.002
        while True:
            try:
                outcomes = await self._hop(self._run_batch, ops)
            except Exception as error:
                log.exception("ledger batch of %s operations failed", len(ops))
                for queued in batch:
                    if not queued.future.done():
                        queued.future.set_exception(error)
                return
            if outcomes is not None:
                break
            # Another process (the command line) held the write lock through the
            # whole busy timeout; nothing of ours was written, so run it all again.
            log.warning(
                "ledger is busy; retrying %s operations in %.3fs", len(ops), delay
            )
            self.retries += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, 0.5)
        self.batches += 1
        self.ops += len(ops)
        for queued, (ok, value) in zip(batch, outcomes, strict=True):
            queued.deliver(ok, value)

    def _read(self, fn: Op[T]) -> T:
        """In the database thread: one consistent snapshot for a multi-query read."""
        conn = self._db._conn
        conn.execute("BEGIN")
        try:
            return fn(conn)
        finally:
            conn.execute("COMMIT")

    def _run_batch(self, ops: list[Op[Any]]) -> list[tuple[bool, Any]] | None:
        """In the database thread: every op in one transaction, each in a savepoint.

        Returns None when the write lock could not be had, with nothing written.
        """
        conn = self._db._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as error:
            if is_busy(error):
                return None
            raise
        try:
            outcomes = [_run_one(conn, op) for op in ops]
            conn.execute("COMMIT")
        except BaseException as error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if is_busy(error):
                return None
            raise
        return outcomes


def _run_one(conn: sqlite3.Connection, op: Op[Any]) -> tuple[bool, Any]:
    """One op inside its own savepoint, so a refused op leaves the others whole."""
    conn.execute("SAVEPOINT op")
    try:
        result = op(conn)
    except KeepWrites as kept:
        conn.execute("RELEASE op")
        return False, kept.error
    except Exception as error:
        if is_busy(error):
            raise
        conn.execute("ROLLBACK TO op")
        conn.execute("RELEASE op")
        if not isinstance(error, MeldError):
            log.error("ledger operation failed: %r", error)
        return False, error
    conn.execute("RELEASE op")
    return True, result
