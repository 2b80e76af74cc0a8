"""The kill -9 drill of bench/crash_drill.py, run as the operator would run it.

Each cycle kills a loaded `meld-console serve` at a random moment and the drill
asserts the books after a restart: no hold left, every answered request logged
with the credits its answer named, every Idempotency-Key charged once.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

DRILL = Path(__file__).parents[2] / "bench" / "crash_drill.py"


def run_drill(cycles: int, seed: int) -> str:
    done = subprocess.run(
        [sys.executable, str(DRILL), "--cycles", str(cycles), "--seed", str(seed)],
        capture_output=True,
        text=True,
        timeout=60 + 10 * cycles,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def test_random_kills_under_load_lose_nothing_and_charge_nothing_twice() -> None:
    out = run_drill(cycles=3, seed=7)

    assert "3 kills:" in out
    assert "nothing answered lost, nothing charged twice" in out


@pytest.mark.slow
def test_many_random_kills_under_load_keep_the_books() -> None:
    out = run_drill(cycles=30, seed=11)

    assert "30 kills:" in out
