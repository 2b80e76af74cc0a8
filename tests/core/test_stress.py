"""The stress runner: counts, concurrency, statuses, streams, percentiles, reports."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from meld_core.config import Config, load_config, parse_config
from meld_core.errors import InvalidRequest, PeerError
from meld_core.signing import new_secret, parse_signed
from meld_core.stress import (
    RequestOutcome,
    console_credentials,
    node_url,
    percentile,
    render_markdown,
    run_stress,
)
from tests.support.nodes import running_node, write_config

PEER = "stress-peer"
SECRET = new_secret()
COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}


def fake_node(handler: Callable[[Request, dict], Response]) -> httpx.ASGITransport:
    """A transport to an app that checks each signature, then asks `handler`."""

    async def chat(request: Request) -> Response:
        body = await request.body()
        target = request.url.path + (
            f"?{request.url.query}" if request.url.query else ""
        )
        signed = parse_signed(request.headers.get, request.method, target, body)
        if signed is None or signed.peer != PEER or not signed.verify([SECRET]):
            return JSONResponse({"error": {"type": "unauthorized"}}, status_code=401)
        return await handler(request, json.loads(body))

    app = Starlette(routes=[Route("/v1/chat/completions", chat, methods=["POST"])])
    return httpx.ASGITransport(app=app)


def sse(events: list[tuple[str | None, str]]) -> AsyncIterator[bytes]:
    async def body() -> AsyncIterator[bytes]:
        for event, data in events:
            prefix = f"event: {event}\n" if event else ""
            yield f"{prefix}data: {data}\n\n".encode()

    return body()


async def test_each_level_sends_its_count_with_at_most_level_in_flight() -> None:
    in_flight = 0
    widest = 0

    async def handler(request: Request, body: dict) -> Response:
        nonlocal in_flight, widest
        in_flight += 1
        widest = max(widest, in_flight)
        await asyncio.sleep(0.02)  # service time of the fake backend
        in_flight -= 1
        return JSONResponse(COMPLETION, headers={"X-Meld-Queue-Position": "0"})

    widths: list[int] = []

    async def measured(request: Request, body: dict) -> Response:
        response = await handler(request, body)
        widths.append(widest)
        return response

    results = await run_stress(
        "http://node", PEER, SECRET, "sim-small", [1, 3],
        requests_per_level=7, transport=fake_node(measured),
    )  # fmt: skip

    assert [(r.level, r.sent, r.ok, r.failed) for r in results] == [
        (1, 7, 7, 0),
        (3, 7, 7, 0),
    ]
    assert widths[6] == 1  # the first level never overlapped
    assert widest == 3
    assert all(r.p50_ms is not None and r.p50_ms >= 15 for r in results)
    assert results[1].throughput_rps > results[0].throughput_rps


async def test_default_request_count_equals_the_level() -> None:
    async def handler(request: Request, body: dict) -> Response:
        return JSONResponse(COMPLETION)

    results = await run_stress(
        "http://node", PEER, SECRET, "m", [2, 5], transport=fake_node(handler)
    )

    assert [r.sent for r in results] == [2, 5]


async def test_refusals_are_counted_by_status_and_error_type() -> None:
    calls = 0

    async def handler(request: Request, body: dict) -> Response:
        nonlocal calls
        calls += 1
        if calls % 2 == 0:
            error = {"error": {"type": "overloaded", "message": "full"}}
            return JSONResponse(error, status_code=429, headers={"Retry-After": "1"})
        return JSONResponse(COMPLETION, headers={"X-Meld-Queue-Position": str(calls)})

    seen: list[RequestOutcome] = []
    [result] = await run_stress(
        "http://node", PEER, SECRET, "m", [1], requests_per_level=6,
        on_result=lambda level, outcome: seen.append(outcome),
        transport=fake_node(handler),
    )  # fmt: skip

    assert (result.sent, result.ok, result.failed) == (6, 3, 3)
    assert dict(result.by_status) == {200: 3, 429: 3}
    assert dict(result.error_types) == {"overloaded": 3}
    assert result.queue_positions_seen == 5
    assert len(seen) == 6 and sum(o.ok for o in seen) == 3


async def test_requests_carry_the_model_and_max_tokens_and_a_valid_signature() -> None:
    bodies: list[dict] = []

    async def handler(request: Request, body: dict) -> Response:
        bodies.append(body)
        return JSONResponse(COMPLETION)

    [result] = await run_stress(
        "http://node", PEER, SECRET, "sim-small", [2], max_tokens=9,
        transport=fake_node(handler),
    )  # fmt: skip

    assert result.ok == 2
    assert {(b["model"], b["max_tokens"], b["stream"]) for b in bodies} == {
        ("sim-small", 9, False)
    }


async def test_a_wrong_secret_shows_up_as_unauthorized() -> None:
    async def handler(request: Request, body: dict) -> Response:
        return JSONResponse(COMPLETION)

    [result] = await run_stress(
        "http://node", PEER, new_secret(), "m", [2], transport=fake_node(handler)
    )

    assert result.ok == 0
    assert dict(result.by_status) == {401: 2}
    assert result.p50_ms is None and result.max_ms is None


async def test_a_stream_records_its_queue_position_and_first_token() -> None:
    chunk = {
        "object": "chat.completion.chunk",
        "choices": [{"delta": {"content": "x"}}],
    }

    async def handler(request: Request, body: dict) -> Response:
        assert body["stream"] is True
        events = [
            ("meld.queue", json.dumps({"position": 2, "eta_s": 0.5})),
            ("meld.queue", json.dumps({"position": 1, "eta_s": 0.1})),
            (None, json.dumps(chunk)),
            ("meld.done", json.dumps({"request_id": "r1", "queue_position": 2})),
            (None, "[DONE]"),
        ]
        return StreamingResponse(sse(events), media_type="text/event-stream")

    [result] = await run_stress(
        "http://node", PEER, SECRET, "m", [2], stream=True, transport=fake_node(handler)
    )

    assert (result.ok, result.failed) == (2, 0)
    assert result.queue_positions_seen == 2
    assert result.ttft_p50_ms is not None


async def test_a_stream_that_ends_without_done_is_a_failure() -> None:
    chunk = {
        "object": "chat.completion.chunk",
        "choices": [{"delta": {"content": "x"}}],
    }

    async def handler(request: Request, body: dict) -> Response:
        events = [(None, json.dumps(chunk))]
        return StreamingResponse(sse(events), media_type="text/event-stream")

    [result] = await run_stress(
        "http://node", PEER, SECRET, "m", [1], stream=True, transport=fake_node(handler)
    )

    assert result.failed == 1
    assert dict(result.error_types) == {"incomplete_stream": 1}


async def test_an_unreachable_node_counts_connect_errors() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port now, so every request is refused at once.

    [result] = await run_stress(
        f"http://127.0.0.1:{port}", PEER, SECRET, "m", [2], timeout_s=5
    )

    assert (result.sent, result.ok) == (2, 0)
    assert dict(result.by_status) == {"connect_error": 2}


@pytest.mark.parametrize(
    ("levels", "per_level"), [([], None), ([0], None), ([5, 1001], None), ([1], 0)]
)
async def test_a_plan_out_of_bounds_is_refused(
    levels: list[int], per_level: int | None
) -> None:
    with pytest.raises(InvalidRequest):
        await run_stress(
            "http://node", PEER, SECRET, "m", levels, requests_per_level=per_level
        )


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(100, 0, -1)]

    assert percentile(values, 50) == 50.0
    assert percentile(values, 95) == 95.0
    assert percentile(values, 99) == 99.0
    assert percentile(values, 100) == 100.0
    assert percentile([7.0], 99) == 7.0
    assert percentile([], 50) is None


async def test_markdown_report_has_a_row_per_level() -> None:
    async def handler(request: Request, body: dict) -> Response:
        return JSONResponse(COMPLETION)

    results = await run_stress(
        "http://node", PEER, SECRET, "sim-small", [1, 4], transport=fake_node(handler)
    )
    report = render_markdown(results, target="http://node", model="sim-small")

    rows = [
        line
        for line in report.splitlines()
        if line.startswith("| ") and "---" not in line
    ]
    assert rows[1].startswith("| 1 | 1 | 1 | 0 |")
    assert rows[2].startswith("| 4 | 4 | 4 | 0 |")
    assert "`sim-small`" in report
    assert SECRET not in report


def config_in(tmp_path: Path, listen: str = "127.0.0.1:8787") -> Config:
    text = f"""
[node]
id = "meld-t"
listen = "{listen}"
data_dir = "{tmp_path}"

[[backends]]
name = "sim"
kind = "sim"
models = ["sim-small"]
"""
    return parse_config(text, tmp_path / "config.toml")


def test_console_credentials_read_the_secret_file(tmp_path: Path) -> None:
    config = config_in(tmp_path)
    secret = new_secret()
    (tmp_path / "console.secret").write_text(secret + "\n")

    assert console_credentials(config) == ("meld-t-console", secret)


def test_console_credentials_name_the_file_when_it_is_missing_or_wrong(
    tmp_path: Path,
) -> None:
    config = config_in(tmp_path)

    with pytest.raises(PeerError, match=r"console\.secret"):
        console_credentials(config)
    (tmp_path / "console.secret").write_text("not a secret")
    with pytest.raises(PeerError, match="does not hold a peer secret"):
        console_credentials(config)


@pytest.mark.parametrize(
    ("listen", "url"),
    [
        ("127.0.0.1:9000", "http://127.0.0.1:9000"),
        ("0.0.0.0:8787", "http://127.0.0.1:8787"),
        ("[::]:8787", "http://[::1]:8787"),
    ],
)
def test_node_url_reaches_a_wildcard_listen_over_loopback(
    tmp_path: Path, listen: str, url: str
) -> None:
    assert node_url(config_in(tmp_path, listen)) == url


async def test_a_real_node_with_a_sim_backend_serves_every_stress_request(
    tmp_path: Path,
) -> None:
    path = write_config(tmp_path, slots=2, ttft_s=0.01, tpot_s=0.0005)
    config = load_config(path)

    async with running_node(path) as node:
        peer, secret = console_credentials(config)
        results = await run_stress(
            node.url, peer, secret, "sim-small", [1, 3], requests_per_level=6,
            max_tokens=16,
        )  # fmt: skip

    assert [(r.level, r.sent, r.ok, r.failed) for r in results] == [
        (1, 6, 6, 0),
        (3, 6, 6, 0),
    ]
    for r in results:
        assert dict(r.by_status) == {200: 6}
        assert r.p50_ms is not None and r.p95_ms is not None
        assert r.p99_ms is not None and r.max_ms is not None
        assert 10 <= r.p50_ms <= r.p95_ms <= r.p99_ms <= r.max_ms
    # Three at once on two slots: the third must have waited in the node's queue.
    assert results[0].queue_positions_seen == 0
    assert results[1].queue_positions_seen >= 1


async def test_the_console_peer_can_stress_past_the_node_wide_peer_limits(
    tmp_path: Path,
) -> None:
    limits = "[limits]\nrequests_per_minute = 5\nmax_in_flight = 2\n"
    path = write_config(tmp_path, slots=2, ttft_s=0.01, tpot_s=0.0005, extra=limits)
    config = load_config(path)

    async with running_node(path) as node:
        peer, secret = console_credentials(config)
        results = await run_stress(
            node.url, peer, secret, "sim-small", [8], requests_per_level=16,
            max_tokens=16,
        )  # fmt: skip
        record = await node.ledger.peer(peer)

    assert (record.requests_per_minute, record.max_in_flight) == (100_000, 1000)
    assert (results[0].ok, dict(results[0].by_status)) == (16, {200: 16})


async def test_cancelling_a_run_stops_its_requests_at_once() -> None:
    started = asyncio.Event()
    release = asyncio.Event()

    async def handler(request: Request, body: dict) -> Response:
        started.set()
        await release.wait()  # never set: only cancellation ends the request
        return JSONResponse(COMPLETION)

    run = asyncio.create_task(
        run_stress("http://node", PEER, SECRET, "m", [3], transport=fake_node(handler))
    )
    await asyncio.wait_for(started.wait(), 5)
    run.cancel()

    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(run, 5)
