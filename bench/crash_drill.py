"""kill -9 at random moments under load, again and again: the books must hold.

Each cycle starts `meld-console serve` on one ledger, keeps `--concurrency` signed
requests going (streaming and not), kills the node with SIGKILL after a random
delay, and checks the ledger with the node down:

- no hold is left open once the next node has started;
- every request that was answered 200 is in the request log with the credits its
  answer named (nothing answered is lost);
- the peer's balance is what it was granted less every settle (charged once);
- the accounts sum to zero and replay from the transfers.

Every request carries an Idempotency-Key. One cut off by a kill is sent again
with its key after the restart, until it is answered: it may have been settled
just before the kill (the retry replays that answer) or not at all (it runs
again). At the end every key has been answered, and the ledger must hold exactly
one settled request per key: none lost, none charged twice.

Run: python bench/crash_drill.py [--cycles 10] [--concurrency 16] [--seed 1]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx

from meld_core.ledger import Ledger
from meld_core.signing import MeldAuth, new_secret

GRANT = 10**9
CONFIG = """
[node]
id = "meld-drill"
listen = "127.0.0.1:0"
data_dir = "{data}"

[[backends]]
name = "sim"
kind = "sim"
models = ["sim-small"]
max_concurrency = 8
max_queue = 512
ttft_s = 0.002
tpot_s = 0.0005
parallel = 8

[pricing."sim-small"]
input_per_mtok = 100000
output_per_mtok = 400000
min_charge = 1
max_output_tokens = 64

[limits]
requests_per_minute = 100000000
max_in_flight = 100000
"""


def start_serve(config: Path) -> tuple[subprocess.Popen[str], str]:
    """A serve process and its URL, once it listens."""
    process = subprocess.Popen(
        [sys.executable, "-m", "meld_console.cli", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "MELD_LOG_LEVEL": "WARNING"},
    )
    assert process.stdout is not None
    for line in process.stdout:
        if "listening on " in line:
            return process, line.rsplit("listening on ", 1)[1].strip()
    raise RuntimeError(f"serve exited with {process.wait()} before listening")


Body = dict[str, object]


def body(n: int) -> Body:
    """The request of number n: every other one streams."""
    return {
        "model": "sim-small",
        "max_tokens": 8,
        "stream": n % 2 == 1,
        "messages": [{"role": "user", "content": f"request {n}"}],
    }


REPLAYED: list[str] = []


async def send(client: httpx.AsyncClient, key: str, n: int) -> dict | None:
    """The `meld` object of a 200 answer; None for any other status."""
    headers = {"Idempotency-Key": key}
    if body(n)["stream"]:
        return await _streamed(client, key, body(n), headers)
    reply = await client.post("/v1/chat/completions", json=body(n), headers=headers)
    if reply.headers.get("X-Meld-Replayed") == "true":
        REPLAYED.append(key)
    return reply.json()["meld"] if reply.status_code == 200 else None


async def load(
    url: str,
    secret: str,
    concurrency: int,
    answered: dict[str, dict],
    cut_off: dict[str, int],
) -> None:
    """Retry what the last kill cut off, then send new requests until this node dies."""
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(
        base_url=url, auth=MeldAuth("drill", secret), timeout=10, limits=limits
    ) as client:
        for key, n in list(cut_off.items()):
            meld = await send(client, key, n)
            assert meld is not None, f"retry of {key} was refused"
            answered[key] = meld
            del cut_off[key]

        async def worker(w: int) -> None:
            n = 0
            while True:
                key = f"w{w}-{len(answered)}-{n}"
                n += 1
                try:
                    meld = await send(client, key, n)
                except (httpx.TransportError, json.JSONDecodeError):
                    cut_off[key] = n
                    return
                if meld is not None:
                    answered[key] = meld

        await asyncio.gather(*(worker(w) for w in range(concurrency)))


async def _streamed(
    client: httpx.AsyncClient, key: str, request: Body, headers: dict[str, str]
) -> dict | None:
    """The `meld.done` object of a stream that ended with [DONE], else None."""
    meld, event, done = None, "", False
    async with client.stream(
        "POST", "/v1/chat/completions", json=request, headers=headers
    ) as reply:
        if reply.status_code != 200:
            return None
        if reply.headers.get("X-Meld-Replayed") == "true":
            REPLAYED.append(key)
        async for line in reply.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                if event == "meld.done":
                    meld = json.loads(line[6:])
                done = done or line == "data: [DONE]"
                event = ""
    return meld if done else None


async def check(db: Path, answered: dict[str, dict]) -> tuple[int, int]:
    """Assert the books; returns (settled requests, settled but not answered)."""
    async with await Ledger.open(db) as ledger:
        await ledger.check_invariants()
        balance = await ledger.balance("drill")
        assert balance.held == 0, f"{balance.held} still held"
        rows = await ledger.requests(limit=10**7)
        logged = {r.request_id: r for r in rows if r.status == 200}
        for meld in answered.values():
            row = logged.get(meld["request_id"])
            assert row is not None, f"answered {meld['request_id']} is not logged"
            assert row.credits == meld["credits_charged"], meld
        charged = sum(r.credits for r in logged.values())
        assert balance.balance == GRANT - charged, (balance.balance, charged)
    return len(logged), len(logged) - len(answered)


async def drill(cycles: int, concurrency: int, seed: int) -> None:
    rng = random.Random(seed)
    answered: dict[str, dict] = {}
    cut_off: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        config = Path(tmp) / "config.toml"
        config.write_text(CONFIG.format(data=Path(tmp) / "data"))
        db = Path(tmp) / "data" / "ledger.db"
        secret = new_secret()
        async with await Ledger.open(db) as ledger:
            await ledger.add_peer("drill", secret, credits=GRANT, actor="drill")
        for cycle in range(1, cycles + 1):
            process, url = start_serve(config)
            running = asyncio.create_task(
                load(url, secret, concurrency, answered, cut_off)
            )
            await asyncio.sleep(rng.uniform(0.3, 1.5))
            process.send_signal(signal.SIGKILL)
            process.wait()
            await running
            print(
                f"kill {cycle:3}: {len(answered):6} keys answered,"
                f" {len(cut_off):3} cut off, to be sent again"
            )
        process, url = start_serve(config)
        await load_retries_only(url, secret, answered, cut_off)
        settled, unanswered = await check(db, answered)
        process.send_signal(signal.SIGTERM)
        process.wait()
    assert unanswered == 0, f"{unanswered} requests charged with no key answered"
    print(
        f"{cycles} kills: {len(answered)} keys answered, {settled} requests settled:"
        f" one each ({len(REPLAYED)} retries replayed an answer settled just"
        " before a kill); no hold left, nothing answered lost, nothing charged twice"
    )


async def load_retries_only(
    url: str, secret: str, answered: dict[str, dict], cut_off: dict[str, int]
) -> None:
    """Send again what the last kill cut off, and nothing new."""
    async with httpx.AsyncClient(
        base_url=url, auth=MeldAuth("drill", secret), timeout=10
    ) as client:
        for key, n in list(cut_off.items()):
            meld = await send(client, key, n)
            assert meld is not None, f"retry of {key} was refused"
            answered[key] = meld
            del cut_off[key]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    asyncio.run(drill(args.cycles, args.concurrency, args.seed))


if __name__ == "__main__":
    main()
