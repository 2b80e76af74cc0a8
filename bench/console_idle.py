"""What an idle console costs: CPU % of one core, and bytes/s written to the terminal.

Runs the real console (node inside) on an 80x24 pseudo-terminal, lets it settle,
then measures over a window. Targets: <= 2 % CPU, <= 2 KB/s.

Run: python bench/console_idle.py [--seconds 20] [--screens 1,2,5] [--size 80x24]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from console_pty import (
    PtyProcess,
    console_argv,
    free_port,
    wait_serving,
)

SCREEN_NAMES = {
    "1": "dashboard",
    "2": "peers",
    "3": "network",
    "4": "stress",
    "5": "log",
}


def write_config(directory: Path, port: int) -> Path:
    path = directory / "config.toml"
    path.write_text(
        f"""
[node]
id = "meld-idle"
listen = "127.0.0.1:{port}"
data_dir = "{directory / "data"}"

[[backends]]
name = "sim"
kind = "sim"
models = ["sim-small"]
max_concurrency = 2
ttft_s = 0.3
tpot_s = 0.02
""",
        encoding="utf-8",
    )
    return path


def measure(console: PtyProcess, seconds: float) -> tuple[float, float]:
    """CPU % of one core and bytes/s over the next `seconds`."""
    cpu0, out0, t0 = console.cpu_s(), console.bytes_out, time.monotonic()
    time.sleep(seconds)
    cpu1, out1, t1 = console.cpu_s(), console.bytes_out, time.monotonic()
    elapsed = t1 - t0
    return 100 * (cpu1 - cpu0) / elapsed, (out1 - out0) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--screens", default="1")
    parser.add_argument("--size", default="80x24")
    args = parser.parse_args()
    columns, lines = (int(n) for n in args.size.split("x"))

    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        config = write_config(Path(tmp), port)
        console = PtyProcess(console_argv(config), columns=columns, lines=lines)
        try:
            wait_serving(f"http://127.0.0.1:{port}")
            print(f"idle console at {args.size}, {args.seconds:g} s per screen")
            print("| screen | CPU % of one core | bytes/s to the terminal |")
            print("| --- | --- | --- |")
            for key in args.screens.split(","):
                console.press(key)
                time.sleep(args.settle)
                cpu, rate = measure(console, args.seconds)
                print(f"| {SCREEN_NAMES[key]} | {cpu:.2f} | {rate:.0f} |")
        finally:
            code = console.stop()
    print(f"console exited with {code}")


if __name__ == "__main__":
    main()
