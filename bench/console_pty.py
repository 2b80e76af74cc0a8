"""Run a MELD process on a pseudo-terminal and measure what it costs.

Shared by bench/console_idle.py and bench/console_load.py; not a benchmark itself.
"""

from __future__ import annotations

import fcntl
import os
import pty
import signal
import socket
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import httpx

CONSOLE = (
    "import sys, pathlib\n"
    "from meld_console.app import run_console\n"
    "from meld_core.config import load_config\n"
    "sys.exit(run_console(load_config(pathlib.Path(sys.argv[1])), read_only=False))\n"
)
TICKS_PER_S = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PtyProcess:
    """A child on an 80x24 (or other) pseudo-terminal; counts the bytes it writes."""

    def __init__(self, argv: list[str], *, columns: int = 80, lines: int = 24) -> None:
        master, slave = pty.openpty()
        size = struct.pack("HHHH", lines, columns, 0, 0)
        fcntl.ioctl(slave, termios.TIOCSWINSZ, size)
        env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "truecolor"}
        self.process = subprocess.Popen(
            argv,
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            start_new_session=True,
        )
        os.close(slave)
        self.master = master
        self.bytes_out = 0
        self._open = True
        threading.Thread(target=self._drain, daemon=True).start()

    def _drain(self) -> None:
        while self._open:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.bytes_out += len(chunk)

    def press(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def cpu_s(self) -> float:
        """User plus system CPU time the child has used so far."""
        return cpu_seconds(self.process.pid)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        try:
            code = self.process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            code = self.process.wait()
        self._open = False
        os.close(self.master)
        return code


def cpu_seconds(pid: int) -> float:
    """utime + stime of a process from /proc, in seconds (Linux only)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS_PER_S


def console_argv(config: Path) -> list[str]:
    return [sys.executable, "-c", CONSOLE, str(config)]


def serve_argv(config: Path) -> list[str]:
    return [sys.executable, "-m", "meld_console.cli", "serve", "--config", str(config)]


def wait_serving(url: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} never answered its health check")
