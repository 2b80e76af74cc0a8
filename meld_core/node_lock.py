"""One node per ledger: an advisory lock on a file beside the database.

A node releases every open hold when it starts, since a crash left them. A second
node on the same ledger would release the holds of the one still serving, whose
requests would then go uncharged; the lock stops it before it touches anything.
The command line takes no lock: it never resolves holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path

from .errors import StartError


class NodeLock:
    """Held by the node that serves from a ledger, from start to stop."""

    def __init__(self, db_path: Path) -> None:
        self.path = db_path.with_name(db_path.name + ".node-lock")
        self._fd: int | None = None

    def acquire(self) -> None:
        """Take the lock, or raise StartError naming the node that has it."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise StartError(
                f"another node (pid {holder}) is serving from {self.path.parent};"
                " stop it first, or give this one its own data_dir"
            ) from None
        # The kernel drops the lock when the process dies, kill -9 included; the
        # pid is only there to name the holder.
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd

    def release(self) -> None:
        """Let the next node start; safe to call when not held."""
        fd, self._fd = self._fd, None
        if fd is not None:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            os.close(fd)
