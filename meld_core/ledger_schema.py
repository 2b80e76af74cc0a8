"""The ledger's SQLite schema, its connection settings, and rows turned into values."""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import Any

from .types import PeerRecord, RequestRecord, Transfer

SCHEMA_VERSION = 1
BUSY_TIMEOUT_MS = 10_000
ISSUED = "node:issued"
REVENUE = "node:revenue"

# The hot statements avoid what makes SQLite build a temporary b-tree on every
# execution (a third of a hold+settle pair's cost when measured): `x IN (...)` in a
# CHECK, INSERT ... SELECT in a trigger, and RETURNING. Hence the spelled-out ORs,
# the WHEN clauses and a SELECT before an UPDATE.
# Balances change only through the trigger on `transfers`, so every credit unit that
# lands somewhere left somewhere else and the accounts always sum to zero. The CHECK
# on `accounts` is the last word on overdrafts: an insert that would take a peer or
# an escrow below zero fails as a whole, whatever the Python above it believed.
_DDL = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE IF NOT EXISTS accounts (
    id TEXT PRIMARY KEY,
    balance INTEGER NOT NULL DEFAULT 0,
    CONSTRAINT no_overdraft CHECK (balance >= 0 OR id = 'node:issued'),
    CONSTRAINT whole_units CHECK (typeof(balance) = 'integer')
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS transfers (
    id INTEGER PRIMARY KEY,
    kind TEXT NOT NULL CHECK (
        kind = 'hold' OR kind = 'settle' OR kind = 'release' OR kind = 'grant'
        OR kind = 'deduct'
    ),
    source TEXT NOT NULL REFERENCES accounts(id),
    dest TEXT NOT NULL REFERENCES accounts(id),
    amount INTEGER NOT NULL CHECK (amount > 0),
    reason TEXT NOT NULL,
    actor TEXT NOT NULL,
    at REAL NOT NULL,
    hold_id INTEGER REFERENCES holds(id),
    peer TEXT NOT NULL,
    CHECK (source <> dest)
);
CREATE INDEX IF NOT EXISTS transfers_by_peer ON transfers (peer, id);

CREATE TRIGGER IF NOT EXISTS transfers_move AFTER INSERT ON transfers BEGIN
    UPDATE accounts SET balance = balance - NEW.amount WHERE id = NEW.source;
    UPDATE accounts SET balance = balance + NEW.amount WHERE id = NEW.dest;
END;
CREATE TRIGGER IF NOT EXISTS transfers_no_update BEFORE UPDATE ON transfers BEGIN
    SELECT RAISE(ABORT, 'transfers are immutable');
END;
CREATE TRIGGER IF NOT EXISTS transfers_no_delete BEFORE DELETE ON transfers BEGIN
    SELECT RAISE(ABORT, 'transfers are immutable');
END;

CREATE TABLE IF NOT EXISTS holds (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    peer TEXT NOT NULL REFERENCES peers(id),
    amount INTEGER NOT NULL CHECK (amount > 0),
    state TEXT NOT NULL DEFAULT 'open'
        CHECK (state = 'open' OR state = 'settled' OR state = 'released'),
    request_id TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    resolved_at REAL,
    charged INTEGER CHECK (charged BETWEEN 0 AND amount),
    resolution TEXT,
    CHECK ((state = 'open') = (charged IS NULL))
);
CREATE INDEX IF NOT EXISTS holds_open ON holds (expires_at) WHERE state = 'open';

-- A hold's money moves with its row: placing it writes the hold transfer, and
-- resolving it writes the settle and release transfers. A resolved hold cannot
-- change again, so no caller, retry or second process can resolve it twice.
CREATE TRIGGER IF NOT EXISTS holds_place AFTER INSERT ON holds BEGIN
    INSERT INTO transfers (kind, source, dest, amount, reason, actor, at, hold_id, peer)
    VALUES ('hold', 'peer:' || NEW.peer, 'held:' || NEW.peer, NEW.amount,
            TRIM('request ' || NEW.request_id), NEW.peer, NEW.created_at, NEW.id,
            NEW.peer);
END;
CREATE TRIGGER IF NOT EXISTS holds_resolve_once BEFORE UPDATE ON holds
WHEN OLD.state <> 'open' BEGIN
    SELECT RAISE(ABORT, 'hold already resolved');
END;
-- SQLite fires the newest trigger first: settle, then release.
CREATE TRIGGER IF NOT EXISTS holds_release AFTER UPDATE OF state ON holds
WHEN NEW.amount > NEW.charged BEGIN
    INSERT INTO transfers (kind, source, dest, amount, reason, actor, at, hold_id, peer)
    VALUES ('release', 'held:' || NEW.peer, 'peer:' || NEW.peer,
            NEW.amount - NEW.charged, NEW.resolution, 'node', NEW.resolved_at, NEW.id,
            NEW.peer);
END;
CREATE TRIGGER IF NOT EXISTS holds_settle AFTER UPDATE OF state ON holds
WHEN NEW.charged > 0 BEGIN
    INSERT INTO transfers (kind, source, dest, amount, reason, actor, at, hold_id, peer)
    VALUES ('settle', 'held:' || NEW.peer, 'node:revenue', NEW.charged,
            TRIM('request ' || NEW.request_id), 'node', NEW.resolved_at, NEW.id,
            NEW.peer);
END;

CREATE TABLE IF NOT EXISTS peers (
    id TEXT PRIMARY KEY,
    enabled INTEGER NOT NULL DEFAULT 1,
    created_at REAL NOT NULL,
    last_seen REAL,
    requests_per_minute INTEGER,
    max_in_flight INTEGER
);

CREATE TABLE IF NOT EXISTS secrets (
    peer TEXT NOT NULL REFERENCES peers(id),
    secret TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL
);
CREATE INDEX IF NOT EXISTS secrets_by_peer ON secrets (peer);

CREATE TABLE IF NOT EXISTS nonces (
    peer TEXT NOT NULL,
    nonce TEXT NOT NULL,
    expires_at REAL NOT NULL,
    PRIMARY KEY (peer, nonce)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    request_id TEXT NOT NULL,
    peer TEXT NOT NULL,
    model TEXT NOT NULL,
    backend TEXT NOT NULL,
    status INTEGER NOT NULL,
    error_type TEXT,
    queued_ms REAL NOT NULL,
    latency_ms REAL NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    credits INTEGER NOT NULL,
    at REAL NOT NULL,
    stream INTEGER NOT NULL
);
-- Requests per peer in the last hour scan by time; an older ledger had the
-- index the other way round.
DROP INDEX IF EXISTS requests_by_peer;
CREATE INDEX IF NOT EXISTS requests_by_time ON requests (at, peer);

CREATE TABLE IF NOT EXISTS idempotency (
    peer TEXT NOT NULL,
    key TEXT NOT NULL,
    body_sha256 TEXT NOT NULL,
    state TEXT NOT NULL CHECK (state = 'pending' OR state = 'done'),
    status INTEGER,
    content_type TEXT,
    body BLOB,
    created_at REAL NOT NULL,
    PRIMARY KEY (peer, key)
);

CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    actor TEXT NOT NULL,
    action TEXT NOT NULL,
    peer TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
"""

PEER_COLUMNS = """
    p.id, p.enabled, p.created_at, p.last_seen, p.requests_per_minute,
    p.max_in_flight, a.balance, h.balance
"""
PEER_JOINS = """
    FROM peers p
    JOIN accounts a ON a.id = 'peer:' || p.id
    JOIN accounts h ON h.id = 'held:' || p.id
"""
TRANSFER_COLUMNS = "id, kind, source, dest, amount, reason, actor, at, hold_id"
REQUEST_COLUMNS = """
    request_id, peer, model, backend, status, error_type, queued_ms, latency_ms,
    input_tokens, output_tokens, credits, at, stream
"""


def connect_file(path: Path) -> sqlite3.Connection:
    """Open the database file with the settings every ledger connection needs.

    Runs in aiosqlite's thread; the caller owns the connection afterwards.
    """
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    # SQLite gives its -wal and -shm files the mode of the main file, so creating
    # the main file 0600 first keeps all three private without touching the umask,
    # which is process-wide and would race with other threads creating files.
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    for file in (path, *(path.with_name(path.name + s) for s in ("-wal", "-shm"))):
        # A file left readable by an older build or a careless copy is narrowed.
        if file.exists() and file.stat().st_mode & 0o077:
            file.chmod(0o600)
    conn = sqlite3.connect(
        path, isolation_level=None, check_same_thread=False, cached_statements=256
    )
    conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("PRAGMA foreign_keys = ON")
    # Hot pages (accounts, index leaves) stay cached between batches.
    conn.execute("PRAGMA cache_size = -32768")
    return conn


def create_schema(conn: sqlite3.Connection) -> None:
    """Create the tables on a fresh file, or check the version of an existing one."""
    row = conn.execute(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone()
    if row is not None:
        found = conn.execute("SELECT value FROM meta WHERE key = 'schema'").fetchone()
        if found is not None and int(found[0]) > SCHEMA_VERSION:
            raise RuntimeError(
                f"ledger schema {found[0]} is newer than this program's"
                f" {SCHEMA_VERSION}; upgrade MELD to open it"
            )
    # executescript would COMMIT our open transaction, so run statement by statement.
    for statement in _split(_DDL):
        conn.execute(statement)
    conn.execute(
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('schema', ?)",
        (str(SCHEMA_VERSION),),
    )
    conn.executemany(
        "INSERT OR IGNORE INTO accounts (id, balance) VALUES (?, 0)",
        ((ISSUED,), (REVENUE,)),
    )


def _split(script: str) -> list[str]:
    """The statements of a script, keeping trigger bodies whole."""
    statements: list[str] = []
    current = ""
    for line in script.splitlines(keepends=True):
        current += line
        if sqlite3.complete_statement(current):
            statements.append(current.strip())
            current = ""
    return [s for s in statements if s]


def peer_record(row: tuple[Any, ...], requests_1h: int) -> PeerRecord:
    """A `PeerRecord` from a row of PEER_COLUMNS."""
    pid, enabled, created_at, last_seen, rpm, in_flight, available, held = row
    return PeerRecord(
        id=str(pid),
        enabled=bool(enabled),
        balance=int(available) + int(held),
        held=int(held),
        created_at=float(created_at),
        last_seen=None if last_seen is None else float(last_seen),
        requests_1h=requests_1h,
        requests_per_minute=None if rpm is None else int(rpm),
        max_in_flight=None if in_flight is None else int(in_flight),
    )


def transfer(row: tuple[Any, ...]) -> Transfer:
    """A `Transfer` from a row of TRANSFER_COLUMNS."""
    return Transfer(*row)


def request_record(row: tuple[Any, ...]) -> RequestRecord:
    """A `RequestRecord` from a row of REQUEST_COLUMNS."""
    values = list(row)
    values[-1] = bool(values[-1])
    return RequestRecord(*values)


def request_params(record: RequestRecord) -> tuple[object, ...]:
    """The values of a `RequestRecord` in REQUEST_COLUMNS order."""
    return (
        record.request_id,
        record.peer,
        record.model,
        record.backend,
        record.status,
        record.error_type,
        record.queued_ms,
        record.latency_ms,
        record.input_tokens,
        record.output_tokens,
        record.credits,
        record.at,
        int(record.stream),
    )


_ESCROW_MISMATCH = """
    SELECT a.id, a.balance, COALESCE(SUM(h.amount), 0) AS open_sum
    FROM accounts a LEFT JOIN holds h ON a.id = 'held:' || h.peer AND h.state = 'open'
    WHERE a.id GLOB 'held:*' GROUP BY a.id HAVING a.balance <> open_sum
"""
_REPLAY_MISMATCH = """
    WITH flows (id, amount) AS (
        SELECT dest, amount FROM transfers
        UNION ALL SELECT source, -amount FROM transfers
    ), net (id, amount) AS (SELECT id, SUM(amount) FROM flows GROUP BY id)
    SELECT a.id, a.balance, COALESCE(net.amount, 0) AS replayed
    FROM accounts a LEFT JOIN net ON net.id = a.id WHERE a.balance <> replayed
"""


def invariant_problems(conn: sqlite3.Connection) -> list[str]:
    """What is wrong with the books, in words; empty when they balance."""
    problems = []
    (total,) = conn.execute("SELECT COALESCE(SUM(balance), 0) FROM accounts").fetchone()
    if total != 0:
        problems.append(f"accounts sum to {total}")
    for account, amount in conn.execute(
        "SELECT id, balance FROM accounts WHERE balance < 0 AND id <> 'node:issued'"
    ):
        problems.append(f"{account} is {amount}")
    for account, amount, open_sum in conn.execute(_ESCROW_MISMATCH):
        problems.append(f"{account} is {amount} but its open holds sum to {open_sum}")
    for account, amount, net in conn.execute(_REPLAY_MISMATCH):
        problems.append(f"{account} is {amount} but its transfers sum to {net}")
    return problems
