"""A node in front of a fake OpenAI-compatible upstream: every failure maps to
section 6, and credits are untouched by every failure."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from meld_core.node import Node
from tests.support.nodes import chat_body, peer_client, running_node, write_config
from tests.support.upstreams import FakeOpenAI

pytestmark = pytest.mark.asyncio

MODELS = [
    "gpt-4o-mini",
    "fake-500",
    "fake-429",
    "fake-402",
    "fake-401",
    "fake-hang",
    "fake-drop",
    "fake-malformed",
    "fake-truncated",
    "fake-keepalive-hang",
    "fake-stall",
    "fake-nousage",
]


def _backend(url: str, timeout_s: float) -> str:
    models = ", ".join(f'"{m}"' for m in MODELS)
    prices = "".join(
        f'[pricing."{m}"]\ninput_per_mtok = 1000000\noutput_per_mtok = 2000000\n'
        "max_output_tokens = 50\n"
        for m in MODELS
    )
    return (
        f'[[backends]]\nname = "upstream"\nkind = "openai"\nbase_url = "{url}"\n'
        f'api_key_env = "MELD_TEST_UPSTREAM_KEY"\nmodels = [{models}]\n'
        f"max_concurrency = 8\nrequest_timeout_s = {timeout_s}\n" + prices
    )


@pytest.fixture
async def setup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Node, httpx.AsyncClient, FakeOpenAI]]:
    monkeypatch.setenv("MELD_TEST_UPSTREAM_KEY", "sk-test-upstream-key")
    with FakeOpenAI(api_key="sk-test-upstream-key", delay_s=0.05) as upstream:
        config = write_config(tmp_path, backends=_backend(upstream.url, 0.5))
        async with running_node(config) as node:
            _, secret = await node.add_peer("agent-1", credits=10_000)
            async with peer_client(node, "agent-1", secret) as client:
                yield node, client, upstream


async def test_a_passthrough_completion_forwards_and_charges_usage(setup) -> None:  # type: ignore[no-untyped-def]
    node, client, upstream = setup
    response = await client.post(
        "/v1/chat/completions", json=chat_body("gpt-4o-mini", max_tokens=500)
    )
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]
    cost = usage["prompt_tokens"] + 2 * usage["completion_tokens"]
    assert response.json()["meld"]["credits_charged"] == cost
    sent = upstream.last.body
    assert sent["max_tokens"] == 50  # capped by the model's limit
    assert upstream.last.headers["authorization"] == "Bearer sk-test-upstream-key"
    assert "x-meld-signature" not in upstream.last.headers
    assert (await node.ledger.balance("agent-1")).balance == 10_000 - cost


@pytest.mark.parametrize(
    "model, status, kind",
    [
        ("fake-500", 502, "upstream_error"),
        ("fake-429", 502, "upstream_error"),
        ("fake-402", 502, "upstream_error"),
        ("fake-401", 502, "upstream_error"),
        ("fake-drop", 502, "upstream_error"),
        ("fake-malformed", 502, "upstream_error"),
        ("fake-hang", 504, "upstream_timeout"),
    ],
)
async def test_upstream_failures_map_to_section_6_and_charge_nothing(
    setup,
    model: str,
    status: int,
    kind: str,  # type: ignore[no-untyped-def]
) -> None:
    node, client, _ = setup
    response = await client.post("/v1/chat/completions", json=chat_body(model))
    assert response.status_code == status
    error = response.json()["error"]
    assert error["type"] == kind
    assert "sk-test-upstream-key" not in response.text
    balance = await node.ledger.balance("agent-1")
    assert (balance.balance, balance.held) == (10_000, 0)
    await node.ledger.check_invariants()


@pytest.mark.parametrize(
    "model, kind",
    [
        ("fake-truncated", "upstream_error"),
        ("fake-keepalive-hang", "upstream_timeout"),
        ("fake-stall", "upstream_timeout"),
        ("fake-500", "upstream_error"),
    ],
)
async def test_stream_failures_charge_nothing(setup, model: str, kind: str) -> None:  # type: ignore[no-untyped-def]
    node, client, _ = setup
    async with client.stream(
        "POST", "/v1/chat/completions", json=chat_body(model, stream=True)
    ) as response:
        text = (await response.aread()).decode()
    if response.status_code == 200:
        # Headers went out with the first piece: the error arrives as an event.
        assert "event: meld.error" in text and "data: [DONE]" not in text
        error = json.loads(text.split("event: meld.error\ndata: ")[1].split("\n")[0])
    else:
        error = json.loads(text)
    assert error["error"]["type"] == kind
    balance = await node.ledger.balance("agent-1")
    assert (balance.balance, balance.held) == (10_000, 0)


async def test_a_stream_without_upstream_usage_is_charged_by_estimate(setup) -> None:  # type: ignore[no-untyped-def]
    node, client, _ = setup
    response = await client.post("/v1/chat/completions", json=chat_body("fake-nousage"))
    assert response.status_code == 200
    charged = response.json()["meld"]["credits_charged"]
    assert charged >= 1
    assert (await node.ledger.balance("agent-1")).balance == 10_000 - charged
