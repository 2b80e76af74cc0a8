"""The console in a real terminal: signals stop it cleanly; logs stay off screen."""

from __future__ import annotations

import asyncio
import contextlib
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
import pytest

from meld_core.ledger import Ledger
from meld_core.signing import MeldAuth

DEADLINE_S = 30.0
LAUNCH = (
    "import sys\n"
    "from meld_console.app import run_console\n"
    "from meld_core.config import load_config\n"
    "sys.exit(run_console(load_config(__import__('pathlib').Path(sys.argv[1])),"
    " read_only=False))\n"
)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def write_config(root: Path, port: int) -> Path:
    path = root / "config.toml"
    path.write_text(
        f"""
[node]
id = "meld-pty"
listen = "127.0.0.1:{port}"
data_dir = "{root / "data"}"

[[backends]]
name = "sim"
kind = "sim"
models = ["sim-small"]
max_concurrency = 2
ttft_s = 0.6
tpot_s = 0.0

[pricing."sim-small"]
output_per_mtok = 1000000
min_charge = 1
""",
        encoding="utf-8",
    )
    return path


def _take_the_terminal() -> None:
    """In the child: a session whose controlling terminal is the pty, as over SSH."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class Terminal:
    """The console as a child process on an 80x24 pseudo-terminal.

    With `controlling`, the pty is the session's controlling terminal, so closing
    it makes the kernel send SIGHUP and SIGCONT, as a dropped SSH session does.
    """

    def __init__(self, config: Path, *, controlling: bool = False) -> None:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        env = {**os.environ, "TERM": "xterm-256color", "COLORTERM": "truecolor"}
        self.process = subprocess.Popen(
            [sys.executable, "-c", LAUNCH, str(config)],
            stdin=slave,
            stdout=slave,
            stderr=slave,
            env=env,
            preexec_fn=_take_the_terminal if controlling else None,
            start_new_session=not controlling,
        )
        os.close(slave)
        self.master: int | None = master
        self.output = bytearray()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while self.master is not None:
            try:
                chunk = os.read(self.master, 65536)
            except OSError:
                return
            if not chunk:
                return
            self.output += chunk

    def hang_up(self, *, send_sighup: bool = True) -> None:
        """Drop the terminal as a lost SSH session does, then send SIGHUP."""
        master, self.master = self.master, None
        if master is not None:
            os.close(master)
        if send_sighup:
            self.process.send_signal(signal.SIGHUP)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()
        if self.master is not None:
            os.close(self.master)
            self.master = None


def wait_until_serving(url: str) -> None:
    end = time.monotonic() + DEADLINE_S
    while time.monotonic() < end:
        try:
            if httpx.get(f"{url}/v1/health", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.05)
    raise AssertionError("the console's node never served")


def start_a_request(url: str, secret_file: Path, peer: str) -> threading.Thread:
    """A chat request that is still in flight when the signal lands."""
    secret = secret_file.read_text(encoding="utf-8").strip()
    body = {
        "model": "sim-small",
        "max_tokens": 8,
        "messages": [{"role": "user", "content": "hi"}],
    }

    def send() -> None:
        with contextlib.suppress(httpx.HTTPError):
            httpx.post(
                f"{url}/v1/chat/completions",
                json=body,
                auth=MeldAuth(peer, secret),
                timeout=DEADLINE_S,
            )

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


async def held_by(db: Path, peer: str) -> int:
    ledger = await Ledger.open(db)
    try:
        return (await ledger.balance(peer)).held
    finally:
        await ledger.close()


def wait_for_a_hold(db: Path, peer: str) -> None:
    """Return once `peer` has credits held, so the signal lands mid-request."""
    end = time.monotonic() + DEADLINE_S
    while time.monotonic() < end:
        if asyncio.run(held_by(db, peer)) > 0:
            return
        time.sleep(0.01)
    raise AssertionError("the request never took a hold")


@pytest.mark.parametrize("how", ["SIGTERM", "SIGHUP"])
def test_a_signal_stops_the_node_cleanly_and_leaves_no_hold(
    tmp_path: Path, how: str
) -> None:
    port = free_port()
    config = write_config(tmp_path, port)
    url = f"http://127.0.0.1:{port}"
    terminal = Terminal(config)
    try:
        wait_until_serving(url)
        data = tmp_path / "data"
        request = start_a_request(url, data / "console.secret", "meld-pty-console")
        wait_for_a_hold(data / "ledger.db", "meld-pty-console")
        if how == "SIGHUP":
            terminal.hang_up()
        else:
            terminal.process.send_signal(signal.SIGTERM)
        code = terminal.process.wait(timeout=DEADLINE_S)
        request.join(timeout=DEADLINE_S)
    finally:
        terminal.close()

    assert code == 0
    log_text = (data / "node.log").read_text(encoding="utf-8")
    assert f"received {how}" in log_text
    assert "node meld-pty stopped" in log_text
    assert asyncio.run(held_by(data / "ledger.db", "meld-pty-console")) == 0
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/v1/health", timeout=1)


def test_a_hung_up_controlling_terminal_stops_the_console_and_its_process(
    tmp_path: Path,
) -> None:
    port = free_port()
    terminal = Terminal(write_config(tmp_path, port), controlling=True)
    try:
        wait_until_serving(f"http://127.0.0.1:{port}")
        terminal.hang_up(send_sighup=False)  # the kernel sends SIGHUP and SIGCONT
        code = terminal.process.wait(timeout=DEADLINE_S)
    finally:
        terminal.close()

    assert code == 0
    log_text = (tmp_path / "data" / "node.log").read_text(encoding="utf-8")
    assert "received SIGHUP" in log_text
    assert "node meld-pty stopped" in log_text


def test_log_lines_never_reach_the_terminal(tmp_path: Path) -> None:
    port = free_port()
    terminal = Terminal(write_config(tmp_path, port))
    try:
        wait_until_serving(f"http://127.0.0.1:{port}")
        terminal.process.send_signal(signal.SIGTERM)
        assert terminal.process.wait(timeout=DEADLINE_S) == 0
    finally:
        terminal.close()
    log_text = (tmp_path / "data" / "node.log").read_text(encoding="utf-8")
    assert "serving on" in log_text
    screen = bytes(terminal.output)
    assert b"meld-pty" in screen  # the header drew
    assert b"serving on" not in screen
    assert b"INFO" not in screen
