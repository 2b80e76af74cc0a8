"""A node in front of a fake OpenAI-compatible upstream: every failure maps to
section 6, and credits are untouched by every failure."""

from __future__ import annotations

import json
import logging
import math
import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from meld_core.logs import setup_logging
from meld_core.node import Node
from tests.support.nodes import peer_client, running_node, write_config
from tests.support.upstreams import FakeDeepSeek, FakeOpenAI

pytestmark = pytest.mark.asyncio

KEY = "sk-test-upstream-key"
TIMEOUT_S = 0.5
# A timeout fires late on two loaded cores, never this late.
SLACK_S = 3.0
# Text no log line may hold: it stands for whatever a peer asks a model.
PROMPT = "the launch code is PROMPT-TEXT-4711"
CREDITS = 10_000
MODELS = [
    "gpt-4o-mini",
    "fake-500",
    "fake-503",
    "fake-429",
    "fake-402",
    "fake-401",
    "fake-403",
    "fake-404",
    "fake-hang",
    "fake-drop",
    "fake-malformed",
    "fake-truncated",
    "fake-keepalive-hang",
    "fake-stall",
    "fake-error-event",
    "fake-nousage",
    "fake-overcount",
    "fake-busy",
    "odd-price",
    "min-charge",
]
# Most models cost one unit per input token and two per output token, so a charge
# is easy to check; these two exercise rounding up and the minimum charge.
PRICES = {
    "odd-price": "input_per_mtok = 270000\noutput_per_mtok = 1100000\n",
    "min-charge": "input_per_mtok = 1\noutput_per_mtok = 1\nmin_charge = 5\n",
}
DEFAULT_PRICE = "input_per_mtok = 1000000\noutput_per_mtok = 2000000\n"


def _backend(url: str) -> str:
    models = ", ".join(f'"{m}"' for m in MODELS)
    prices = "".join(
        f'[pricing."{m}"]\n{PRICES.get(m, DEFAULT_PRICE)}max_output_tokens = 50\n'
        for m in MODELS
    )
    # One slot, so a slot a failure kept would stall the next request.
    return (
        f'[[backends]]\nname = "upstream"\nkind = "openai"\nbase_url = "{url}"\n'
        f'api_key_env = "MELD_TEST_UPSTREAM_KEY"\nmodels = [{models}]\n'
        f"max_concurrency = 1\nqueue_timeout_s = 10\n"
        f"request_timeout_s = {TIMEOUT_S}\n" + prices
    )


def body(model: str, **fields: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": PROMPT}]} | fields


@pytest.fixture
async def setup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[Node, httpx.AsyncClient, FakeOpenAI]]:
    monkeypatch.setenv("MELD_TEST_UPSTREAM_KEY", KEY)
    with FakeOpenAI(api_key=KEY, delay_s=0.1) as upstream:
        config = write_config(tmp_path, backends=_backend(upstream.url))
        async with running_node(config) as node:
            _, secret = await node.add_peer("agent-1", credits=CREDITS)
            async with peer_client(node, "agent-1", secret) as client:
                yield node, client, upstream


async def post(client: httpx.AsyncClient, payload: dict[str, Any]) -> httpx.Response:
    return await client.post("/v1/chat/completions", json=payload)


async def stream(
    client: httpx.AsyncClient, payload: dict[str, Any]
) -> tuple[httpx.Response, list[tuple[str, str]]]:
    """A streaming request's response and its (event, data) pairs."""
    async with client.stream(
        "POST", "/v1/chat/completions", json=payload | {"stream": True}
    ) as response:
        text = (await response.aread()).decode()
    events: list[tuple[str, str]] = []
    event = "message"
    for line in text.splitlines():
        if line.startswith("event: "):
            event = line[7:]
        elif line.startswith("data: "):
            events.append((event, line[6:]))
            event = "message"
    return response, events


async def assert_nothing_charged_and_the_slot_is_free(
    node: Node, client: httpx.AsyncClient
) -> None:
    balance = await node.ledger.balance("agent-1")
    assert (balance.balance, balance.held) == (CREDITS, 0)
    await node.ledger.check_invariants()
    route = node.router.routes["upstream"]
    assert (route.queue.in_use, route.in_flight, route.queue.waiting) == (0, 0, 0)
    started = time.monotonic()
    served = await post(client, body("gpt-4o-mini", max_tokens=1))
    assert served.status_code == 200, served.text
    assert served.json()["meld"]["queue_position"] == 0
    assert time.monotonic() - started < SLACK_S


def assert_logged_without_prompt_or_key(
    caplog: pytest.LogCaptureFixture, request_id: str, kind: str
) -> None:
    lines = [r.getMessage() for r in caplog.records]
    assert any(request_id in line and kind in line for line in lines), lines
    assert PROMPT not in caplog.text
    assert KEY not in caplog.text


async def test_a_passthrough_completion_forwards_and_charges_usage(setup) -> None:  # type: ignore[no-untyped-def]
    node, client, upstream = setup
    response = await post(client, body("gpt-4o-mini", max_tokens=500))
    assert response.status_code == 200, response.text
    usage = response.json()["usage"]
    cost = usage["prompt_tokens"] + 2 * usage["completion_tokens"]
    assert response.json()["meld"]["credits_charged"] == cost
    assert response.headers["x-meld-credits-charged"] == str(cost)
    sent = upstream.last.body
    assert sent["max_tokens"] == 50  # capped by the model's limit
    assert upstream.last.headers["authorization"] == f"Bearer {KEY}"
    assert "x-meld-signature" not in upstream.last.headers
    assert (await node.ledger.balance("agent-1")).balance == CREDITS - cost


async def test_a_stream_asks_for_usage_and_is_charged_what_it_reports(setup) -> None:  # type: ignore[no-untyped-def]
    node, client, upstream = setup
    response, events = await stream(client, body("gpt-4o-mini"))

    assert response.status_code == 200
    assert upstream.last.body["stream_options"] == {"include_usage": True}
    chunks = [json.loads(d) for e, d in events if e == "message" and d != "[DONE]"]
    # The caller did not ask for the usage chunk, so it is not forwarded.
    assert all(c["choices"] for c in chunks)
    prompt = upstream.prompt_tokens(upstream.last.body)
    output = sum(1 for c in chunks if c["choices"][0]["delta"].get("content"))
    done = json.loads(next(d for e, d in events if e == "meld.done"))
    assert done["credits_charged"] == prompt + 2 * output
    assert done["balance"] == CREDITS - done["credits_charged"]
    assert (await node.ledger.balance("agent-1")).balance == done["balance"]


@pytest.mark.parametrize("streaming", [False, True])
async def test_a_cost_rounds_up_to_a_whole_unit(setup, streaming: bool) -> None:  # type: ignore[no-untyped-def]
    node, client, upstream = setup
    if streaming:
        _, events = await stream(client, body("odd-price"))
        charged = json.loads(next(d for e, d in events if e == "meld.done"))
        charged = charged["credits_charged"]
    else:
        charged = (await post(client, body("odd-price"))).json()["meld"]
        charged = charged["credits_charged"]

    tokens, _ = upstream.answer(upstream.last.body)
    micro = upstream.prompt_tokens(upstream.last.body) * 270_000
    micro += len(tokens) * 1_100_000
    assert micro % 1_000_000 != 0  # the case rounds
    assert charged == math.ceil(micro / 1_000_000)
    assert (await node.ledger.balance("agent-1")).balance == CREDITS - charged


async def test_a_cheap_request_pays_the_minimum_charge(setup) -> None:  # type: ignore[no-untyped-def]
    node, client, _ = setup
    response = await post(client, body("min-charge"))

    assert response.json()["meld"]["credits_charged"] == 5
    assert (await node.ledger.balance("agent-1")).balance == CREDITS - 5


@pytest.mark.parametrize("streaming", [False, True])
async def test_usage_beyond_the_hold_is_charged_the_hold(
    setup, streaming: bool
) -> None:  # type: ignore[no-untyped-def]
    node, client, _ = setup
    payload = body("fake-overcount", max_tokens=50)
    raw = json.dumps(payload | ({"stream": True} if streaming else {})).encode()
    # The hold counts every byte of the body as an input token, plus max_tokens.
    hold = len(raw) + 2 * 50

    response = await client.post(
        "/v1/chat/completions",
        content=raw,
        headers={"content-type": "application/json"},
    )

    text = response.text
    if streaming:
        done = text.split("event: meld.done\ndata: ")[1].split("\n")[0]
        charged = json.loads(done)["credits_charged"]
    else:
        assert response.json()["usage"]["prompt_tokens"] == 1_000_000
        charged = response.json()["meld"]["credits_charged"]
    assert charged == hold
    balance = await node.ledger.balance("agent-1")
    assert (balance.balance, balance.held) == (CREDITS - hold, 0)


@pytest.mark.parametrize("streaming", [False, True])
async def test_an_answer_without_usage_is_charged_by_estimate(
    setup, streaming: bool
) -> None:  # type: ignore[no-untyped-def]
    node, client, upstream = setup
    if streaming:
        _, events = await stream(client, body("fake-nousage"))
        charged = json.loads(next(d for e, d in events if e == "meld.done"))
        charged = charged["credits_charged"]
    else:
        charged = (await post(client, body("fake-nousage"))).json()["meld"]
        charged = charged["credits_charged"]

    tokens, _ = upstream.answer(upstream.last.body)
    # About four characters a token, rounded up, for the prompt and the answer.
    estimate = math.ceil(len(PROMPT) / 4) + 2 * math.ceil(len("".join(tokens)) / 4)
    assert charged == estimate
    assert (await node.ledger.balance("agent-1")).balance == CREDITS - charged


@pytest.mark.parametrize(
    "model, status, kind",
    [
        ("fake-500", 502, "upstream_error"),
        ("fake-402", 502, "upstream_error"),
        ("fake-401", 502, "upstream_error"),
        ("fake-403", 502, "upstream_error"),
        ("fake-404", 502, "upstream_error"),
        ("fake-429", 429, "overloaded"),
        ("fake-503", 429, "overloaded"),
        ("fake-drop", 502, "upstream_error"),
        ("fake-malformed", 502, "upstream_error"),
        ("fake-truncated", 502, "upstream_error"),
        ("fake-hang", 504, "upstream_timeout"),
        ("fake-keepalive-hang", 504, "upstream_timeout"),
    ],
)
async def test_upstream_failures_map_to_section_6_and_charge_nothing(
    setup,  # type: ignore[no-untyped-def]
    caplog: pytest.LogCaptureFixture,
    model: str,
    status: int,
    kind: str,
) -> None:
    node, client, _ = setup
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()

    response = await post(client, body(model))

    assert time.monotonic() - started < TIMEOUT_S + SLACK_S
    assert response.status_code == status
    error = response.json()["error"]
    assert error["type"] == kind
    assert KEY not in response.text and PROMPT not in response.text
    if status == 429:
        assert response.headers["retry-after"] == "7"
    if model == "fake-402":
        assert "insufficient_credits" not in response.text
    rid = response.headers["x-meld-request-id"]
    assert_logged_without_prompt_or_key(caplog, rid, kind)
    await assert_nothing_charged_and_the_slot_is_free(node, client)


@pytest.mark.parametrize(
    "model, kind",
    [
        ("fake-truncated", "upstream_error"),
        ("fake-keepalive-hang", "upstream_timeout"),
        ("fake-stall", "upstream_timeout"),
        ("fake-drop", "upstream_error"),
        ("fake-malformed", "upstream_error"),
        ("fake-error-event", "upstream_error"),
        ("fake-500", "upstream_error"),
        ("fake-429", "overloaded"),
    ],
)
async def test_stream_failures_charge_nothing(
    setup,  # type: ignore[no-untyped-def]
    caplog: pytest.LogCaptureFixture,
    model: str,
    kind: str,
) -> None:
    node, client, _ = setup
    caplog.set_level(logging.DEBUG)
    started = time.monotonic()

    response, events = await stream(client, body(model))

    assert time.monotonic() - started < TIMEOUT_S + SLACK_S
    if response.status_code == 200:
        # Headers went out with the first piece: the error arrives as an event.
        assert ("message", "[DONE]") not in events
        error = json.loads(next(d for e, d in events if e == "meld.error"))
    else:
        error = response.json()
    assert error["error"]["type"] == kind
    assert KEY not in json.dumps(events) and PROMPT not in json.dumps(events)
    rid = response.headers["x-meld-request-id"]
    assert_logged_without_prompt_or_key(caplog, rid, kind)
    await assert_nothing_charged_and_the_slot_is_free(node, client)


@pytest.mark.parametrize("streaming", [False, True])
async def test_keep_alives_before_the_first_token_do_not_fail_a_request(
    setup,  # type: ignore[no-untyped-def]
    monkeypatch: pytest.MonkeyPatch,
    streaming: bool,
) -> None:
    node, client, upstream = setup
    monkeypatch.setattr(upstream, "delay_s", TIMEOUT_S / 2)

    if streaming:
        response, events = await stream(client, body("fake-busy"))
        assert ("message", "[DONE]") in events
        charged = json.loads(next(d for e, d in events if e == "meld.done"))
        charged = charged["credits_charged"]
    else:
        response = await post(client, body("fake-busy"))
        charged = response.json()["meld"]["credits_charged"]

    assert response.status_code == 200
    assert charged > 0
    assert (await node.ledger.balance("agent-1")).balance == CREDITS - charged


@pytest.fixture
def restore_logging() -> Iterator[None]:
    """Take away the handlers `setup_logging` adds, once the test is over."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    yield
    for handler in list(root.handlers):
        if handler not in saved[0]:
            root.removeHandler(handler)
            handler.close()
    root.setLevel(saved[1])


async def test_the_upstream_key_reaches_no_log_file_and_no_snapshot(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, restore_logging: None
) -> None:
    monkeypatch.setenv("MELD_TEST_UPSTREAM_KEY", KEY)
    monkeypatch.setenv("MELD_LOG_LEVEL", "DEBUG")
    with FakeDeepSeek(api_key=KEY) as upstream:
        config_path = write_config(tmp_path, backends=_backend(upstream.url))
        async with running_node(config_path) as node:
            setup_logging(node.config, stderr=False)
            _, secret = await node.add_peer("agent-1", credits=CREDITS)
            async with peer_client(node, "agent-1", secret) as client:
                for model in ("gpt-4o-mini", "fake-401", "fake-500", "fake-drop"):
                    await post(client, body(model))
                    await stream(client, body(model))
            snapshot = repr(node.snapshot())
        assert upstream.last.headers["authorization"] == f"Bearer {KEY}"
    for handler in logging.getLogger().handlers:
        handler.flush()
    log_text = node.config.log_path.read_text()
    assert "backend=upstream" in log_text
    assert KEY not in log_text and PROMPT not in log_text
    assert KEY not in snapshot
