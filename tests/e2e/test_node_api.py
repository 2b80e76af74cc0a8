"""The node's endpoints over real HTTP on 127.0.0.1, with a sim backend."""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from meld_core.node import Node
from meld_core.signing import signed_headers
from tests.support.nodes import chat_body, peer_client, running_node, write_config

pytestmark = pytest.mark.asyncio


@pytest.fixture
async def node(tmp_path: Path) -> AsyncIterator[Node]:
    async with running_node(write_config(tmp_path)) as started:
        yield started


@pytest.fixture
async def agent(node: Node) -> AsyncIterator[httpx.AsyncClient]:
    _, secret = await node.add_peer("agent-1", credits=1000)
    async with peer_client(node, "agent-1", secret) as client:
        yield client


async def _balance(node: Node, peer: str = "agent-1") -> tuple[int, int]:
    balance = await node.ledger.balance(peer)
    return balance.balance, balance.held


async def test_public_endpoints_answer_without_a_signature(node: Node) -> None:
    async with httpx.AsyncClient(base_url=node.url) as client:
        health = await client.get("/v1/health")
        network = await client.get("/v1/network")
        metrics = await client.get("/metrics")
    assert health.json() == {"status": "ok"}
    view = network.json()
    assert view["node"]["id"] == "meld-test"
    model = view["models"][0]
    assert model["id"] == "sim-small" and model["max_concurrency"] == 2
    assert {"healthy", "in_flight", "queued", "p50_ms", "eta_s"} <= set(model)
    assert "meld_queue_depth" in metrics.text
    assert all("x-meld-request-id" in r.headers for r in (health, network, metrics))


async def test_models_lists_what_the_node_routes(agent: httpx.AsyncClient) -> None:
    response = await agent.get("/v1/models")
    assert response.status_code == 200
    assert [m["id"] for m in response.json()["data"]] == ["sim-small"]


async def test_a_completion_is_charged_its_cost_and_reports_it(
    node: Node, agent: httpx.AsyncClient
) -> None:
    response = await agent.post("/v1/chat/completions", json=chat_body(max_tokens=20))
    assert response.status_code == 200, response.text
    body = response.json()
    meld = body["meld"]
    usage = body["usage"]
    cost = max(
        1,
        -(
            -(usage["prompt_tokens"] * 100_000 + usage["completion_tokens"] * 400_000)
            // 1_000_000
        ),
    )
    assert meld["credits_charged"] == cost
    assert meld["balance"] == 1000 - cost
    assert meld["queue_position"] == 0 and meld["backend"] == "sim"
    assert response.headers["x-meld-credits-charged"] == str(cost)
    assert response.headers["x-meld-balance"] == str(1000 - cost)
    assert response.headers["x-meld-request-id"] == meld["request_id"]
    assert await _balance(node) == (1000 - cost, 0)
    await node.ledger.check_invariants()


async def test_credits_shows_balance_held_available_and_recent(
    agent: httpx.AsyncClient,
) -> None:
    await agent.post("/v1/chat/completions", json=chat_body(max_tokens=5))
    credits = (await agent.get("/v1/credits")).json()
    assert credits["peer"] == "agent-1"
    assert credits["available"] == credits["balance"] - credits["held"]
    kinds = [t["kind"] for t in credits["recent"]]
    assert "settle" in kinds and "hold" in kinds and "grant" in kinds


async def test_a_stream_ends_with_meld_done_and_done(
    node: Node, agent: httpx.AsyncClient
) -> None:
    events: list[tuple[str | None, str]] = []
    async with agent.stream(
        "POST", "/v1/chat/completions", json=chat_body(stream=True, max_tokens=8)
    ) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        event = None
        async for line in response.aiter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                events.append((event, line[6:]))
                event = None
    chunks = [json.loads(d) for e, d in events if e is None and d != "[DONE]"]
    assert chunks and all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert events[-1] == (None, "[DONE]")
    done_event, done_data = events[-2]
    assert done_event == "meld.done"
    meld = json.loads(done_data)
    assert meld["balance"] == 1000 - meld["credits_charged"]
    assert await _balance(node) == (meld["balance"], 0)


@pytest.mark.parametrize(
    "tamper",
    ["peer", "timestamp", "nonce", "signature", "method", "target", "body", "secret"],
)
async def test_tampering_with_any_signed_element_is_unauthorized(
    node: Node, tamper: str
) -> None:
    _, secret = await node.add_peer("agent-1", credits=100)
    await node.add_peer("agent-2", credits=100)
    body = json.dumps(chat_body(max_tokens=4)).encode()
    method, target = "POST", "/v1/chat/completions"
    headers = signed_headers(
        "agent-1",
        "msk_" + "x" * 43 if tamper == "secret" else secret,
        method,
        target,
        body,
    )
    if tamper == "peer":
        headers["X-Meld-Peer"] = "agent-2"
    elif tamper == "timestamp":
        headers["X-Meld-Timestamp"] = str(int(headers["X-Meld-Timestamp"]) - 1)
    elif tamper == "nonce":
        headers["X-Meld-Nonce"] = headers["X-Meld-Nonce"][:-1] + "Z"
    elif tamper == "signature":
        sig = headers["X-Meld-Signature"]
        headers["X-Meld-Signature"] = sig[:-1] + ("0" if sig[-1] != "0" else "1")
    elif tamper == "method":
        method = "PUT"
    elif tamper == "target":
        target += "?x=1"
    elif tamper == "body":
        body = body.replace(b"hello", b"hellO")
    async with httpx.AsyncClient(base_url=node.url) as client:
        response = await client.request(method, target, content=body, headers=headers)
    expected = 405 if tamper == "method" else 401
    assert response.status_code == expected
    if expected == 401:
        assert response.json()["error"] == {
            "type": "unauthorized",
            "message": "request signature rejected",
        }
    assert await _balance(node) == (100, 0)


async def test_a_replayed_nonce_is_refused_even_after_a_restart(tmp_path: Path) -> None:
    config = write_config(tmp_path)
    target = "/v1/models"
    async with running_node(config) as node:
        _, secret = await node.add_peer("agent-1")
        headers = signed_headers("agent-1", secret, "GET", target, b"")
        async with httpx.AsyncClient(base_url=node.url) as client:
            assert (await client.get(target, headers=headers)).status_code == 200
            assert (await client.get(target, headers=headers)).status_code == 401
    async with (
        running_node(config) as node,
        httpx.AsyncClient(base_url=node.url) as client,
    ):
        assert (await client.get(target, headers=headers)).status_code == 401


async def test_a_signature_header_of_the_wrong_form_is_a_401(node: Node) -> None:
    async with httpx.AsyncClient(base_url=node.url) as client:
        for value in ("v1=zz", "v2=" + "0" * 64, "", "v1=" + "0" * 200):
            headers = {
                "X-Meld-Peer": "agent-1",
                "X-Meld-Timestamp": str(int(time.time())),
                "X-Meld-Nonce": "n" * 20,
                "X-Meld-Signature": value,
            }
            response = await client.get("/v1/models", headers=headers)
            assert response.status_code == 401


@pytest.mark.parametrize(
    "body, fragment",
    [
        (b"{not json", "not valid JSON"),
        (b"[]", "JSON object"),
        (
            json.dumps({"messages": [{"role": "user", "content": "x"}]}).encode(),
            "model",
        ),
        (json.dumps({"model": "sim-small", "messages": []}).encode(), "messages"),
        (json.dumps(chat_body(max_tokens=0)).encode(), "max_tokens"),
        (json.dumps(chat_body(stream="yes")).encode(), "stream"),
    ],
)
async def test_a_malformed_body_is_a_400_that_holds_nothing(
    node: Node, agent: httpx.AsyncClient, body: bytes, fragment: str
) -> None:
    response = await agent.post("/v1/chat/completions", content=body)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request"
    assert fragment in response.json()["error"]["message"]
    assert await _balance(node) == (1000, 0)


async def test_an_unknown_model_and_an_unknown_path_are_404s(
    agent: httpx.AsyncClient,
) -> None:
    model = await agent.post("/v1/chat/completions", json=chat_body("nope"))
    path = await agent.get("/v1/nothing-here")
    assert (model.status_code, model.json()["error"]["type"]) == (
        404,
        "model_not_found",
    )
    assert (path.status_code, path.json()["error"]["type"]) == (404, "not_found")


async def test_a_hold_that_cannot_be_covered_is_a_402_and_holds_nothing(
    node: Node,
) -> None:
    _, secret = await node.add_peer("poor", credits=3)
    async with peer_client(node, "poor", secret) as client:
        response = await client.post(
            "/v1/chat/completions", json=chat_body(max_tokens=200)
        )
    assert response.status_code == 402
    assert response.json()["error"]["type"] == "insufficient_credits"
    assert await _balance(node, "poor") == (3, 0)


async def test_a_body_over_the_limit_is_a_413(
    node: Node, agent: httpx.AsyncClient
) -> None:
    big = chat_body(messages=[{"role": "user", "content": "x" * 1_100_000}])
    response = await agent.post("/v1/chat/completions", json=big)
    assert response.status_code == 413
    assert response.json()["error"]["type"] == "payload_too_large"
    assert await _balance(node) == (1000, 0)


async def test_an_idempotent_retry_gets_the_first_answer_and_is_charged_once(
    node: Node, agent: httpx.AsyncClient
) -> None:
    headers = {"Idempotency-Key": "order-42"}
    first = await agent.post(
        "/v1/chat/completions", json=chat_body(max_tokens=10), headers=headers
    )
    again = await agent.post(
        "/v1/chat/completions", json=chat_body(max_tokens=10), headers=headers
    )
    other = await agent.post(
        "/v1/chat/completions", json=chat_body(max_tokens=11), headers=headers
    )
    assert first.status_code == again.status_code == 200
    assert again.content == first.content
    assert other.status_code == 409
    assert other.json()["error"]["type"] == "idempotency_conflict"
    charged = first.json()["meld"]["credits_charged"]
    assert await _balance(node) == (1000 - charged, 0)


async def test_request_log_keeps_every_answered_completion(
    node: Node, agent: httpx.AsyncClient
) -> None:
    ok = await agent.post("/v1/chat/completions", json=chat_body(max_tokens=3))
    bad = await agent.post("/v1/chat/completions", json=chat_body("nope"))
    rows = {r.request_id: r for r in await node.ledger.requests(limit=10)}
    assert rows[ok.headers["x-meld-request-id"]].status == 200
    assert rows[bad.headers["x-meld-request-id"]].status == 404
    assert hashlib.sha256(b"").hexdigest()  # the log holds no prompt text
    assert all("hello" not in repr(r) for r in rows.values())


async def test_deeply_nested_json_from_a_stranger_is_answered_401_at_once(
    node: Node,
) -> None:
    body = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    headers = {
        "X-Meld-Peer": "nobody",
        "X-Meld-Timestamp": str(int(time.time())),
        "X-Meld-Nonce": "n" * 20,
        "X-Meld-Signature": "v1=" + "0" * 64,
    }
    async with httpx.AsyncClient(base_url=node.url, timeout=10) as client:
        response = await client.post(
            "/v1/chat/completions", content=body, headers=headers
        )
    assert response.status_code == 401


async def test_deeply_nested_json_from_a_peer_is_a_400_that_holds_nothing(
    node: Node, agent: httpx.AsyncClient
) -> None:
    body = b'{"a":' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    response = await agent.post("/v1/chat/completions", content=body)
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request"
    assert await _balance(node) == (1000, 0)


async def test_a_ledger_failing_in_admission_is_a_500_with_its_request_id(
    node: Node, agent: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(node.ledger, "admit", broken)
    response = await agent.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "internal_error"
    assert response.headers["x-meld-request-id"].startswith("req_")
    assert node.router.limiter.in_flight("agent-1") == 0


async def test_a_refusal_the_ledger_cannot_log_is_still_answered(
    node: Node, agent: httpx.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("disk I/O error")

    monkeypatch.setattr(node.ledger, "record", broken)
    response = await agent.post("/v1/chat/completions", json=chat_body("nope"))
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "model_not_found"


async def test_a_timestamp_of_5000_digits_is_a_401(node: Node) -> None:
    headers = {
        "X-Meld-Peer": "agent-1",
        "X-Meld-Timestamp": "1" * 5000,
        "X-Meld-Nonce": "n" * 20,
        "X-Meld-Signature": "v1=" + "0" * 64,
    }
    async with httpx.AsyncClient(base_url=node.url) as client:
        models = await client.get("/v1/models", headers=headers)
        chat = await client.post("/v1/chat/completions", headers=headers, content=b"{}")
    assert [models.status_code, chat.status_code] == [401, 401]
    assert chat.json()["error"]["type"] == "unauthorized"


MELD_HEADERS = (
    "x-meld-request-id",
    "x-meld-queue-position",
    "x-meld-queued-ms",
    "x-meld-credits-charged",
    "x-meld-balance",
)


@pytest.mark.parametrize("stream", [False, True])
async def test_a_replay_carries_the_meld_headers_of_the_first_answer(
    agent: httpx.AsyncClient, stream: bool
) -> None:
    headers = {"Idempotency-Key": f"order-{stream}"}
    body = chat_body(max_tokens=5, stream=stream)
    first = await agent.post("/v1/chat/completions", json=body, headers=headers)
    again = await agent.post("/v1/chat/completions", json=body, headers=headers)
    assert again.headers["x-meld-replayed"] == "true"
    assert again.content == first.content
    if stream:
        done = again.text.split("event: meld.done\ndata: ")[1].split("\n")[0]
        request_id = json.loads(done)["request_id"]
    else:
        request_id = again.json()["meld"]["request_id"]
    assert again.headers["x-meld-request-id"] == request_id
    assert again.headers.get_list("x-meld-request-id") == [request_id]
    for name in MELD_HEADERS[1:]:
        assert again.headers[name] == first.headers.get(name, again.headers[name])
    assert again.headers["x-meld-balance"] == str(
        json.loads(done)["balance"] if stream else again.json()["meld"]["balance"]
    )


async def test_a_stream_that_did_not_queue_says_queue_position_0(
    agent: httpx.AsyncClient,
) -> None:
    body = chat_body(stream=True, max_tokens=4)
    async with agent.stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.headers["x-meld-queue-position"] == "0"
        await response.aread()


async def test_metrics_label_a_model_no_backend_routes_as_unknown(
    node: Node, agent: httpx.AsyncClient
) -> None:
    for i in range(3):
        await agent.post("/v1/chat/completions", json=chat_body(f"junk-{i}"))
    await agent.post("/v1/chat/completions", json=chat_body(max_tokens=2))
    text = node.metrics.render().decode()
    assert "junk-" not in text
    assert 'model="unknown",status="404"} 3.0' in text
    assert 'model="sim-small",status="200"} 1.0' in text


async def test_a_model_on_an_unhealthy_backend_is_a_503_that_holds_nothing(
    node: Node, agent: httpx.AsyncClient
) -> None:
    node.router.routes["sim"].healthy = False
    response = await agent.post("/v1/chat/completions", json=chat_body(max_tokens=4))
    assert response.status_code == 503
    assert response.json()["error"]["type"] == "unavailable"
    assert response.headers["x-meld-request-id"].startswith("req_")
    assert await _balance(node) == (1000, 0)
    assert node.router.limiter.in_flight("agent-1") == 0


async def _chunks(count: int) -> AsyncIterator[bytes]:
    for _ in range(count):
        yield b"x" * 65_536


async def test_413_and_405_answers_carry_a_request_id(node: Node) -> None:
    async with httpx.AsyncClient(base_url=node.url) as client:
        chunked = await client.post("/v1/chat/completions", content=_chunks(20))
        wrong_method = await client.delete("/v1/health")
    assert "content-length" not in chunked.request.headers
    assert (chunked.status_code, chunked.json()["error"]["type"]) == (
        413,
        "payload_too_large",
    )
    assert (wrong_method.status_code, wrong_method.json()["error"]["type"]) == (
        405,
        "method_not_allowed",
    )
    for response in (chunked, wrong_method):
        assert response.headers["x-meld-request-id"].startswith("req_")
