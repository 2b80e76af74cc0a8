"""What the console costs a loaded node: throughput with the screen vs `serve` alone.

The node runs on a sim backend that answers at once (ttft_s = 0, tpot_s = 0), so
the node itself is the bottleneck. Each target runs in its own process (the console
on an 80x24 pseudo-terminal, on the Dashboard); a load generator in this process
keeps `--concurrency` signed requests going. Targets alternate, round by round.
Target: the console costs at most 10 % of the throughput of `serve` alone.

Run: python bench/console_load.py [--seconds 5] [--rounds 3] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).parent))

from console_pty import (
    PtyProcess,
    console_argv,
    free_port,
    serve_argv,
    wait_serving,
)

from meld_core.signing import signed_headers

TARGET = "/v1/chat/completions"
BODY = json.dumps(
    {
        "model": "sim-small",
        "max_tokens": 16,
        "messages": [{"role": "user", "content": "hi"}],
    }
).encode()


def write_config(directory: Path, port: int) -> Path:
    path = directory / "config.toml"
    path.write_text(
        f"""
[node]
id = "meld-load"
listen = "127.0.0.1:{port}"
data_dir = "{directory / "data"}"

[[backends]]
name = "sim"
kind = "sim"
models = ["sim-small"]
max_concurrency = 256
max_queue = 4096
ttft_s = 0
tpot_s = 0
parallel = 256

[pricing."sim-small"]
input_per_mtok = 1000
output_per_mtok = 2000
min_charge = 1
max_output_tokens = 64

[limits]
requests_per_minute = 100000000
max_in_flight = 100000
""",
        encoding="utf-8",
    )
    return path


async def load(
    url: str, peer: str, secret: str, concurrency: int, seconds: float
) -> float:
    """Completed requests per second while `concurrency` requests stay in flight."""
    done = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        stop_at = time.perf_counter() + seconds

        async def worker() -> None:
            nonlocal done
            while time.perf_counter() < stop_at:
                headers = signed_headers(peer, secret, "POST", TARGET, BODY)
                headers["content-type"] = "application/json"
                async with session.post(url + TARGET, data=BODY, headers=headers) as r:
                    await r.read()
                    done += r.status == 200

        began = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        return done / (time.perf_counter() - began)


def run_target(kind: str, seconds: float, concurrency: int, keys: str = "") -> float:
    """Start a fresh node as `kind`, warm it up, and measure one round."""
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        config = write_config(Path(tmp), port)
        argv = console_argv(config) if kind == "console" else serve_argv(config)
        process = PtyProcess(argv)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_serving(url)
            if kind == "console" and keys:
                process.press(keys)
            secret_file = Path(tmp) / "data" / "console.secret"
            secret = secret_file.read_text(encoding="utf-8").strip()
            peer = "meld-load-console"
            asyncio.run(load(url, peer, secret, concurrency, 1.0))  # warm-up
            cpu0 = process.cpu_s()
            rps = asyncio.run(load(url, peer, secret, concurrency, seconds))
            cpu = 100 * (process.cpu_s() - cpu0) / seconds
        finally:
            process.stop()
        print(f"  {kind:8} {rps:8.1f} req/s   node process CPU {cpu:5.1f} %")
        return rps


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--keys", default="", help="keys to press in the console first")
    args = parser.parse_args()

    results: dict[str, list[float]] = {"serve": [], "console": []}
    for round_no in range(args.rounds):
        print(f"round {round_no + 1}")
        order = ("serve", "console") if round_no % 2 == 0 else ("console", "serve")
        for kind in order:
            results[kind].append(
                run_target(kind, args.seconds, args.concurrency, args.keys)
            )

    serve = statistics.median(results["serve"])
    console = statistics.median(results["console"])
    print()
    print(f"| target | median req/s over {args.rounds} rounds |")
    print("| --- | --- |")
    print(f"| serve | {serve:.1f} |")
    print(f"| console | {console:.1f} |")
    print(f"console cost: {100 * (1 - console / serve):.1f} % of serve's throughput")


if __name__ == "__main__":
    main()
