"""kill -9 with requests in flight: after a restart no hold survives and nothing
answered is lost."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from meld_core.ledger import Ledger
from meld_core.signing import MeldAuth, new_secret
from tests.support.nodes import PRICING, write_config

pytestmark = pytest.mark.asyncio

BACKENDS = """
[[backends]]
name = "fast"
kind = "sim"
models = ["sim-small"]
max_concurrency = 4
ttft_s = 0.005
tpot_s = 0.0005

[[backends]]
name = "slow"
kind = "sim"
models = ["sim-slow"]
max_concurrency = 2
ttft_s = 60
tpot_s = 0.01

[pricing."sim-slow"]
input_per_mtok = 100000
output_per_mtok = 400000
min_charge = 1
max_output_tokens = 256
"""


def _start_serve(config: Path) -> tuple[subprocess.Popen[str], str]:
    process = subprocess.Popen(
        [sys.executable, "-m", "meld_console.cli", "serve", "--config", str(config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert process.stdout is not None
    for line in process.stdout:
        if "listening on " in line:
            return process, line.rsplit("listening on ", 1)[1].strip()
    raise AssertionError(f"serve exited with {process.wait()} before listening")


async def test_kill_9_in_flight_then_restart_loses_nothing(tmp_path: Path) -> None:
    config = write_config(tmp_path, backends=BACKENDS)
    assert PRICING  # the fast model's price comes with the config
    secret = new_secret()
    ledger = await Ledger.open(tmp_path / "data" / "ledger.db")
    await ledger.add_peer("agent-1", secret, credits=100_000, actor="test")
    await ledger.close()

    process, url = _start_serve(config)
    answered: list[dict[str, object]] = []
    try:
        async with httpx.AsyncClient(
            base_url=url, auth=MeldAuth("agent-1", secret), timeout=30
        ) as client:
            for _ in range(5):
                response = await client.post(
                    "/v1/chat/completions",
                    json={
                        "model": "sim-small",
                        "max_tokens": 8,
                        "messages": [{"role": "user", "content": "hi"}],
                    },
                )
                assert response.status_code == 200
                answered.append(response.json()["meld"])
            stuck = [
                asyncio.create_task(
                    client.post(
                        "/v1/chat/completions",
                        json={
                            "model": "sim-slow",
                            "messages": [{"role": "user", "content": "hi"}],
                        },
                    )
                )
                for _ in range(4)
            ]
            deadline = asyncio.get_running_loop().time() + 20
            while True:
                view = (await client.get("/v1/network")).json()
                slow = next(m for m in view["models"] if m["id"] == "sim-slow")
                if slow["in_flight"] == 2 and slow["queued"] == 2:
                    break
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.02)
            credits = (await client.get("/v1/credits")).json()
            assert credits["held"] > 0
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
            for task in stuck:
                with pytest.raises(httpx.TransportError):
                    await task
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    process, url = _start_serve(config)
    try:
        async with httpx.AsyncClient(
            base_url=url, auth=MeldAuth("agent-1", secret), timeout=30
        ) as client:
            credits = (await client.get("/v1/credits")).json()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0

    charged = sum(int(str(m["credits_charged"])) for m in answered)
    assert credits["held"] == 0
    assert credits["balance"] == 100_000 - charged
    assert credits["balance"] == answered[-1]["balance"]
    ledger = await Ledger.open(tmp_path / "data" / "ledger.db")
    try:
        await ledger.check_invariants()
        logged = {r.request_id for r in await ledger.requests(limit=100)}
        assert {str(m["request_id"]) for m in answered} <= logged
        releases = [
            t
            for t in await ledger.transfers("agent-1", limit=50)
            if t.kind == "release" and t.reason == "node restart"
        ]
        assert len(releases) == 4
    finally:
        await ledger.close()
    assert json.dumps(credits)  # the restarted node answered in full


RETRY_BACKENDS = """
[[backends]]
name = "slow"
kind = "sim"
models = ["sim-slow"]
max_concurrency = 2
ttft_s = 3
tpot_s = 0.001

[pricing."sim-slow"]
input_per_mtok = 100000
output_per_mtok = 400000
min_charge = 1
max_output_tokens = 256
"""


async def test_a_retry_after_kill_9_runs_once_with_its_idempotency_key(
    tmp_path: Path,
) -> None:
    config = write_config(tmp_path, backends=RETRY_BACKENDS)
    secret = new_secret()
    ledger = await Ledger.open(tmp_path / "data" / "ledger.db")
    await ledger.add_peer("agent-1", secret, credits=100_000, actor="test")
    await ledger.close()
    body = {"model": "sim-slow", "max_tokens": 4, "messages": [{"role": "user"}]}
    body["messages"][0]["content"] = "hi"
    key = {"Idempotency-Key": "order-7"}

    process, url = _start_serve(config)
    try:
        async with httpx.AsyncClient(
            base_url=url, auth=MeldAuth("agent-1", secret), timeout=30
        ) as client:
            first = asyncio.create_task(
                client.post("/v1/chat/completions", json=body, headers=key)
            )
            deadline = asyncio.get_running_loop().time() + 20
            while (await client.get("/v1/credits")).json()["held"] == 0:
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.02)
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
            with pytest.raises(httpx.TransportError):
                await first
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()

    process, url = _start_serve(config)
    try:
        async with httpx.AsyncClient(
            base_url=url, auth=MeldAuth("agent-1", secret), timeout=30
        ) as client:
            retry = await client.post("/v1/chat/completions", json=body, headers=key)
            again = await client.post("/v1/chat/completions", json=body, headers=key)
            credits = (await client.get("/v1/credits")).json()
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0

    assert retry.status_code == 200, retry.text
    assert again.status_code == 200 and again.headers["X-Meld-Replayed"] == "true"
    assert again.json()["meld"] == retry.json()["meld"]
    charged = retry.json()["meld"]["credits_charged"]
    assert (credits["balance"], credits["held"]) == (100_000 - charged, 0)
