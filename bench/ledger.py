"""Hold+settle pairs per second through the ledger's group-commit writer.

Run: python bench/ledger.py [--pairs 20000] [--levels 1,64,256] [--dir DIR]

Each pair is what a paid request costs the ledger: `admit` (HMAC check, nonce,
hold) and `settle` (charge, release the rest, log the request), with
synchronous=FULL. The baseline runs the same two transactions' SQL from one thread
with plain sqlite3, 64 pairs per commit, with no asyncio and no signatures; the
ratio shows what the async path and its callers cost on top of SQLite.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from pathlib import Path

from meld_core import ledger_ops as ops
from meld_core.ledger import Ledger
from meld_core.ledger_schema import connect_file, create_schema
from meld_core.signing import SignedRequest, new_secret, parse_signed, signed_headers
from meld_core.types import RequestRecord

TARGET = "/v1/chat/completions"
BODY = b'{"model": "sim", "messages": []}'
PEERS = 16
HOLD = 500
COST = 123


def sign(peer: str, secret: str) -> SignedRequest:
    """A signed request as the router would hand it to the ledger."""
    headers = {
        k.lower(): v
        for k, v in signed_headers(peer, secret, "POST", TARGET, BODY).items()
    }
    signed = parse_signed(headers.get, "POST", TARGET, BODY)
    assert signed is not None
    return signed


def record(peer: str, n: int) -> RequestRecord:
    """The request log row a settle writes."""
    return RequestRecord(
        f"req-{n}",
        peer,
        "sim",
        "sim",
        200,
        None,
        1.0,
        20.0,
        100,
        200,
        COST,
        time.time(),
    )


async def ledger_pairs(
    directory: Path, pairs: int, callers: int
) -> tuple[float, float]:
    """Pairs per second and mean batch size with `callers` concurrent callers."""
    ledger = await Ledger.open(directory / f"ledger-{callers}.db")
    peers = [f"peer-{i}" for i in range(PEERS)]
    secrets = {}
    for peer in peers:
        secrets[peer] = new_secret()
        await ledger.add_peer(peer, secrets[peer], credits=10**12, actor="bench")
    work = [sign(peers[n % PEERS], secrets[peers[n % PEERS]]) for n in range(pairs)]
    before = ledger._writer.batches, ledger._writer.ops

    async def caller(start: int) -> None:
        for n in range(start, pairs, callers):
            admission = await ledger.admit(work[n], hold=HOLD, request_id=f"req-{n}")
            assert admission.hold_id is not None
            await ledger.settle(
                admission.hold_id, COST, record=record(admission.peer, n)
            )

    began = time.perf_counter()
    await asyncio.gather(*(caller(i) for i in range(callers)))
    elapsed = time.perf_counter() - began
    batches = ledger._writer.batches - before[0]
    ops_done = ledger._writer.ops - before[1]
    await ledger.check_invariants()
    await ledger.close()
    return pairs / elapsed, ops_done / max(batches, 1)


def baseline_pairs(directory: Path, pairs: int, per_commit: int = 64) -> float:
    """Pairs per second with plain sqlite3, `per_commit` pairs per transaction."""
    conn = connect_file(directory / "baseline.db")
    conn.execute("BEGIN IMMEDIATE")
    create_schema(conn)
    now = time.time()
    ops.add_peer(
        conn,
        "base",
        new_secret(),
        now=now,
        credits=10**12,
        actor="bench",
        limits=(None, None),
    )
    conn.execute("COMMIT")
    began = time.perf_counter()
    for start in range(0, pairs, per_commit):
        conn.execute("BEGIN IMMEDIATE")
        for n in range(start, min(start + per_commit, pairs)):
            hold_id = ops.place_hold(conn, "base", HOLD, f"req-{n}", now + 600, now)
            peer, _ = ops.resolve_hold(
                conn, hold_id, COST, now=now, reason="unused hold"
            )
            ops.log_request(conn, record(peer, n), peer)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - began
    conn.close()
    return pairs / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20000)
    parser.add_argument("--levels", default="1,64,256")
    parser.add_argument("--dir", type=Path, default=None, help="where the files go")
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",")]
    with tempfile.TemporaryDirectory(dir=args.dir) as name:
        directory = Path(name)
        base = baseline_pairs(directory, args.pairs)
        print(f"{'callers':>8} {'pairs/s':>10} {'ops/batch':>10} {'vs baseline':>12}")
        for callers in levels:
            pairs = args.pairs if callers > 1 else min(args.pairs, 2000)
            rate, batch = asyncio.run(ledger_pairs(directory, pairs, callers))
            print(f"{callers:>8} {rate:>10.0f} {batch:>10.1f} {rate / base:>11.2f}x")
        print(
            f"{'baseline':>8} {base:>10.0f} {64:>10} {'(sqlite3, 64 pairs/commit)':>12}"
        )


if __name__ == "__main__":
    main()
