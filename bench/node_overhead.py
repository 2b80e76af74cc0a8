"""What the node costs: a fast upstream called direct vs through `meld-console serve`.

Both targets are measured in one run, alternated round by round at each
concurrency, and reported side by side as throughput ratios and added latency.

Run: python bench/node_overhead.py [--seconds 5] [--rounds 2] [--levels 1,20,100]
     [--transports aiohttp,httpx]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from meld_core.ledger import Ledger
from meld_core.signing import new_secret, signed_headers

HERE = Path(__file__).parent
BODY = json.dumps(
    {
        "model": "bench-model",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "ping"}],
    }
).encode()
TARGET = "/v1/chat/completions"


@dataclass
class Round:
    """One timed round against one target."""

    ok: int
    failed: int
    seconds: float
    latencies_ms: list[float]

    @property
    def rps(self) -> float:
        return self.ok / self.seconds


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_listening(port: int, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"nothing listens on port {port}")


def write_config(directory: Path, upstream: str, port: int) -> Path:
    text = f"""
[node]
id = "meld-bench"
listen = "127.0.0.1:{port}"
data_dir = "{directory}"

[[backends]]
name = "upstream"
kind = "openai"
base_url = "{upstream}/v1"
models = ["bench-model"]
max_concurrency = 256
max_queue = 4096
request_timeout_s = 30

[pricing."bench-model"]
input_per_mtok = 1000
output_per_mtok = 2000
min_charge = 1
max_output_tokens = 64

[limits]
requests_per_minute = 100000000
max_in_flight = 100000
"""
    path = directory / "config.toml"
    path.write_text(text)
    return path


async def add_peer(db: Path) -> str:
    secret = new_secret()
    ledger = await Ledger.open(db)
    await ledger.add_peer("bench", secret, credits=10**12, actor="bench")
    await ledger.close()
    return secret


async def run_round(
    url: str, concurrency: int, seconds: float, secret: str | None
) -> Round:
    """Keep `concurrency` requests going for `seconds`; signed when given a secret."""
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=0)
    latencies: list[float] = []
    counts = {"ok": 0, "failed": 0}
    async with aiohttp.ClientSession(connector=connector) as session:
        stop_at = time.perf_counter() + seconds

        async def worker() -> None:
            while time.perf_counter() < stop_at:
                headers = {"content-type": "application/json"}
                if secret:
                    headers |= signed_headers("bench", secret, "POST", TARGET, BODY)
                began = time.perf_counter()
                try:
                    async with session.post(
                        url + TARGET, data=BODY, headers=headers
                    ) as r:
                        await r.read()
                        good = r.status == 200
                except aiohttp.ClientError:
                    good = False
                if good:
                    counts["ok"] += 1
                    latencies.append((time.perf_counter() - began) * 1000)
                else:
                    counts["failed"] += 1

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - began
    return Round(counts["ok"], counts["failed"], elapsed, latencies)


def quantile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def merge(rounds: list[Round]) -> Round:
    return Round(
        sum(r.ok for r in rounds),
        sum(r.failed for r in rounds),
        sum(r.seconds for r in rounds),
        [x for r in rounds for x in r.latencies_ms],
    )


def start(
    args: list[str], env: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        args,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, **(env or {})},
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--levels", default="1,20,100")
    parser.add_argument("--transports", default="aiohttp")
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]

    up_port = free_port()
    upstream = start([sys.executable, str(HERE / "fast_upstream.py"), str(up_port)])
    wait_listening(up_port)
    up_url = f"http://127.0.0.1:{up_port}"
    targets: dict[str, tuple[str, str | None]] = {"direct": (up_url, None)}
    processes = [upstream]
    results: dict[str, dict[int, list[Round]]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for transport in args.transports.split(","):
                directory = Path(tmp) / transport
                directory.mkdir()
                port = free_port()
                config = write_config(directory, up_url, port)
                secret = await add_peer(directory / "ledger.db")
                command = [
                    sys.executable,
                    "-m",
                    "meld_console.cli",
                    "serve",
                    "--config",
                    str(config),
                ]
                env = {"MELD_HTTP_TRANSPORT": transport, "MELD_LOG_LEVEL": "WARNING"}
                processes.append(start(command, env))
                wait_listening(port)
                targets[f"node/{transport}"] = (f"http://127.0.0.1:{port}", secret)
            for level in levels:
                for url, secret in targets.values():
                    await run_round(url, level, 0.5, secret)  # warm-up
                for _ in range(args.rounds):
                    for name, (url, secret) in targets.items():
                        measured = await run_round(url, level, args.seconds, secret)
                        results.setdefault(name, {}).setdefault(level, []).append(
                            measured
                        )
    finally:
        for process in processes:
            process.terminate()
            process.wait()
    report(results, levels)


def report(results: dict[str, dict[int, list[Round]]], levels: list[int]) -> None:
    print(
        f"{'target':<16}{'conc':>6}{'req/s':>10}{'ratio':>8}{'p50 ms':>9}"
        f"{'p99 ms':>9}{'+p50':>8}{'+p99':>8}{'failed':>8}"
    )
    for level in levels:
        direct = merge(results["direct"][level])
        d50 = quantile(direct.latencies_ms, 0.5)
        d99 = quantile(direct.latencies_ms, 0.99)
        for name, by_level in results.items():
            r = merge(by_level[level])
            p50 = quantile(r.latencies_ms, 0.5)
            p99 = quantile(r.latencies_ms, 0.99)
            ratio = r.rps / direct.rps if direct.rps else float("nan")
            print(
                f"{name:<16}{level:>6}{r.rps:>10.0f}{ratio:>8.2f}{p50:>9.2f}"
                f"{p99:>9.2f}{p50 - d50:>8.2f}{p99 - d99:>8.2f}{r.failed:>8}"
            )


if __name__ == "__main__":
    asyncio.run(main())
