"""Hold+settle pairs per second through the ledger's group-commit writer.

Run: python bench/ledger.py [--pairs 20000] [--levels 1,64,256] [--repeat 3]

Each pair is what a paid request costs the ledger: `admit` (HMAC check, nonce,
hold) and `settle` (charge, release the rest, log the request), with
synchronous=FULL. The baseline runs the same SQL from one thread with plain
sqlite3, 64 pairs per commit, with no asyncio and no signatures: what this schema
costs on this machine with no async path at all. Each row is the best of
`--repeat` runs, since a shared machine only ever makes a run slower; the CPU
column (whole process, both threads) is steadier than the rate on a busy machine.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from dataclasses import dataclass
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
BASELINE_PER_COMMIT = 64


@dataclass(frozen=True, slots=True)
class Run:
    """One measured run."""

    pairs_per_s: float
    cpu_us_per_pair: float
    ops_per_batch: float


def sign(peer: str, secret: str) -> SignedRequest:
    """A signed request as the router hands it to the ledger."""
    headers = signed_headers(peer, secret, "POST", TARGET, BODY)
    lower = {name.lower(): value for name, value in headers.items()}
    signed = parse_signed(lower.get, "POST", TARGET, BODY)
    assert signed is not None
    return signed


def record(peer: str, n: int) -> RequestRecord:
    """The request log row a settle writes."""
    return RequestRecord(
        request_id=f"req-{n}",
        peer=peer,
        model="sim",
        backend="sim",
        status=200,
        error_type=None,
        queued_ms=1.0,
        latency_ms=20.0,
        input_tokens=100,
        output_tokens=200,
        credits=COST,
        at=time.time(),
    )


async def ledger_run(path: Path, pairs: int, callers: int) -> Run:
    """Admit and settle `pairs` requests from `callers` concurrent callers."""
    ledger = await Ledger.open(path)
    secrets = {f"peer-{i}": new_secret() for i in range(PEERS)}
    for peer, secret in secrets.items():
        await ledger.add_peer(peer, secret, credits=10**12, actor="bench")
    peers = list(secrets)
    work = [sign(peers[n % PEERS], secrets[peers[n % PEERS]]) for n in range(pairs)]
    writer = ledger._writer
    batches, done = writer.batches, writer.ops

    async def caller(first: int) -> None:
        for n in range(first, pairs, callers):
            admission = await ledger.admit(work[n], hold=HOLD, request_id=f"req-{n}")
            assert admission.hold_id is not None
            await ledger.settle(
                admission.hold_id, COST, record=record(admission.peer, n)
            )

    began, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(caller(i) for i in range(callers)))
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    per_batch = (writer.ops - done) / max(writer.batches - batches, 1)
    await ledger.check_invariants()
    await ledger.close()
    return Run(pairs / elapsed, cpu / pairs * 1e6, per_batch)


def baseline_run(path: Path, pairs: int) -> Run:
    """The same pairs' SQL with plain sqlite3 from one thread."""
    conn = connect_file(path)
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
    records = [record("base", n) for n in range(pairs)]
    began, cpu = time.perf_counter(), time.process_time()
    for first in range(0, pairs, BASELINE_PER_COMMIT):
        conn.execute("BEGIN IMMEDIATE")
        for n in range(first, min(first + BASELINE_PER_COMMIT, pairs)):
            hold_id = ops.place_hold(conn, "base", HOLD, f"req-{n}", now + 600, now)
            ops.resolve_hold(conn, hold_id, COST, now=now, reason="unused hold")
            ops.log_request(conn, records[n], "base")
        conn.execute("COMMIT")
    elapsed, cpu = time.perf_counter() - began, time.process_time() - cpu
    conn.close()
    return Run(pairs / elapsed, cpu / pairs * 1e6, 2 * BASELINE_PER_COMMIT)


def best(runs: list[Run]) -> Run:
    """The fastest of several runs."""
    return max(runs, key=lambda run: run.pairs_per_s)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=20000)
    parser.add_argument("--levels", default="1,64,256")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=None, help="where files go")
    args = parser.parse_args()
    levels = [int(level) for level in args.levels.split(",")]

    with tempfile.TemporaryDirectory(dir=args.dir) as name:
        files = (Path(name) / f"ledger-{n}.db" for n in range(10**6))
        base = best([baseline_run(next(files), args.pairs) for _ in range(args.repeat)])
        rows = []
        for callers in levels:
            pairs = args.pairs if callers > 1 else min(args.pairs, 2000)
            runs = [
                asyncio.run(ledger_run(next(files), pairs, callers))
                for _ in range(args.repeat)
            ]
            rows.append((str(callers), best(runs)))

    header = ("callers", "pairs/s", "cpu us/pair", "ops/batch", "ratio")
    print(" ".join(f"{h:>{w}}" for h, w in zip(header, (9, 9, 12, 10, 7), strict=True)))
    for label, run in [*rows, ("sqlite3", base)]:
        ratio = run.pairs_per_s / base.pairs_per_s
        print(
            f"{label:>9} {run.pairs_per_s:>9.0f} {run.cpu_us_per_pair:>12.1f}"
            f" {run.ops_per_batch:>10.1f} {ratio:>6.2f}x"
        )
    print(f"sqlite3 = plain sqlite3, same SQL, {BASELINE_PER_COMMIT} pairs per commit")


if __name__ == "__main__":
    main()
