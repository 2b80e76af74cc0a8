"""The credit ledger against a real SQLite file: money, admission, holds, processes."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import stat
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from meld_core import ledger_schema
from meld_core.errors import (
    IdempotencyConflict,
    InsufficientCredits,
    InvalidRequest,
    NotFound,
    PeerError,
    RateLimited,
    Unauthorized,
    UnknownPeer,
)
from meld_core.ledger import Ledger
from meld_core.signing import (
    SignedRequest,
    new_nonce,
    new_secret,
    parse_signed,
    signed_headers,
)
from meld_core.types import Balance, RequestRecord

T = TypeVar("T")
TARGET = "/v1/chat/completions"
BODY = b'{"model": "sim"}'


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def signed(
    peer: str, secret: str, *, now: float | None = None, nonce: str | None = None
) -> SignedRequest:
    """A request signed by `peer`, parsed the way the router parses it."""
    headers = signed_headers(peer, secret, "POST", TARGET, BODY, now=now, nonce=nonce)
    lower = {name.lower(): value for name, value in headers.items()}
    parsed = parse_signed(lower.get, "POST", TARGET, BODY, now=now)
    assert parsed is not None
    return parsed


def record(peer: str, request_id: str, credits: int) -> RequestRecord:
    """A request log row of a successful request."""
    return RequestRecord(
        request_id=request_id,
        peer=peer,
        model="sim",
        backend="sim",
        status=200,
        error_type=None,
        queued_ms=1.0,
        latency_ms=5.0,
        input_tokens=10,
        output_tokens=20,
        credits=credits,
        at=time.time(),
    )


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
async def ledger(tmp_path: Path, clock: Clock) -> AsyncIterator[Ledger]:
    opened = await Ledger.open(tmp_path / "data" / "ledger.db", clock=clock)
    yield opened
    await opened.check_invariants()
    await opened.close()


@pytest.fixture
async def alice(ledger: Ledger) -> str:
    secret = new_secret()
    await ledger.add_peer("alice", secret, credits=1000, actor="test")
    return secret


def sign_alice(secret: str, clock: Clock, nonce: str | None = None) -> SignedRequest:
    return signed("alice", secret, now=clock(), nonce=nonce)


async def test_settle_charges_the_actual_cost_and_releases_the_rest(
    ledger: Ledger, alice: str, clock: Clock
) -> None:
    admission = await ledger.admit(sign_alice(alice, clock), hold=300, request_id="r1")
    assert (admission.held, admission.balance) == (300, 1000)
    during = await ledger.balance("alice")
    assert (during.balance, during.held, during.available) == (1000, 300, 700)

    assert admission.hold_id is not None
    after = await ledger.settle(admission.hold_id, 120)

    assert (after.balance, after.held) == (880, 0)
    totals = await ledger.totals()
    assert totals["node:revenue"] == 120
    assert sum(totals.values()) == 0
    kinds = [t.kind for t in await ledger.transfers("alice")]
    assert sorted(kinds[:2]) == ["release", "settle"]
    assert kinds[2:] == ["hold", "grant"]


async def test_settle_never_charges_more_than_the_hold(
    ledger: Ledger, alice: str, clock: Clock
) -> None:
    admission = await ledger.admit(sign_alice(alice, clock), hold=100)
    assert admission.hold_id is not None

    after = await ledger.settle(admission.hold_id, 5000)

    assert (after.balance, after.held) == (900, 0)
    assert [t.kind for t in await ledger.transfers("alice", limit=1)] == ["settle"]


async def test_release_returns_the_whole_hold(
    ledger: Ledger, alice: str, clock: Clock
) -> None:
    admission = await ledger.admit(sign_alice(alice, clock), hold=400)
    assert admission.hold_id is not None

    after = await ledger.release(admission.hold_id, reason="upstream failed")

    assert (after.balance, after.held) == (1000, 0)
    last = (await ledger.transfers("alice", limit=1))[0]
    assert (last.kind, last.amount, last.reason) == ("release", 400, "upstream failed")


async def test_a_hold_resolves_once_whatever_comes_after(
    ledger: Ledger, alice: str, clock: Clock
) -> None:
    admission = await ledger.admit(sign_alice(alice, clock), hold=300)
    assert admission.hold_id is not None
    await ledger.settle(admission.hold_id, 100, record=record("alice", "r", 100))
    transfers_before = await ledger.transfers("alice", limit=100)

    again = await ledger.settle(admission.hold_id, 250, record=record("alice", "r", 9))
    released = await ledger.release(admission.hold_id)

    assert again == released
    assert (again.balance, again.held) == (900, 0)
    assert await ledger.transfers("alice", limit=100) == transfers_before
    assert len(await ledger.requests()) == 1


async def test_resolving_an_unknown_hold_is_not_found(ledger: Ledger) -> None:
    with pytest.raises(NotFound):
        await ledger.release(12345)


async def test_a_zero_charge_writes_no_settle_transfer(
    ledger: Ledger, alice: str, clock: Clock
) -> None:
    admission = await ledger.admit(sign_alice(alice, clock), hold=50)
    assert admission.hold_id is not None

    await ledger.settle(admission.hold_id, 0)

    assert [t.kind for t in await ledger.transfers("alice", limit=2)] == [
        "release",
        "hold",
    ]


async def test_deduct_beyond_available_is_refused_and_changes_nothing(
    ledger: Ledger, alice: str, clock: Clock
) -> None:
    await ledger.admit(sign_alice(alice, clock), hold=600)
    totals_before = await ledger.totals()

    with pytest.raises(InsufficientCredits, match="400 are available"):
        await ledger.deduct("alice", 401, reason="refund", actor="op")

    assert await ledger.totals() == totals_before
    made = await ledger.deduct("alice", 400, reason="refund", actor="op")
    assert (made.kind, made.source, made.dest, made.actor) == (
        "deduct",
        "peer:alice",
        "node:issued",
        "op",
    )
    assert (await ledger.balance("alice")).available == 0


async def test_grant_and_deduct_check_their_arguments(
    ledger: Ledger, alice: str
) -> None:
    with pytest.raises(InvalidRequest):
        await ledger.grant("alice", 0, reason="x", actor="op")
    with pytest.raises(InvalidRequest):
        await ledger.deduct("alice", -5, reason="x", actor="op")
    with pytest.raises(InvalidRequest):
        await ledger.grant("alice", 5, reason="  ", actor="op")
    with pytest.raises(UnknownPeer) as raised:
        await ledger.grant("bob", 5, reason="x", actor="op")
    assert raised.value.status == 404
    assert (await ledger.balance("alice")).balance == 1000


async def test_amounts_stay_whole_numbers_far_below_sqlite_overflow(
    ledger: Ledger, alice: str, clock: Clock
) -> None:
    huge = 2**63 - 1
    with pytest.raises(InvalidRequest, match="over the limit"):
        await ledger.grant("alice", huge, reason="typo", actor="op")
    with pytest.raises(InvalidRequest, match="over the limit"):
        await ledger.add_peer("bob", new_secret(), credits=2**64, actor="op")
    with pytest.raises(InvalidRequest, match="over the limit"):
        await ledger.admit(sign_alice(alice, clock), hold=huge)
    grants = [
        ledger.grant("alice", 10**15, reason="top up", actor="op") for _ in range(1001)
    ]
    outcomes = await asyncio.gather(*grants, return_exceptions=True)
    refused = [o for o in outcomes if isinstance(o, InvalidRequest)]
    assert len(refused) == 2 and all("balance above" in str(r) for r in refused)

    totals = await ledger.totals()
    assert all(type(amount) is int for amount in totals.values())
    assert totals["peer:alice"] == 1000 + 999 * 10**15
    with pytest.raises(UnknownPeer):
        await ledger.balance("bob")


async def test_a_wild_usage_report_is_charged_no_more_than_the_hold(
    ledger: Ledger, alice: str, clock: Clock
) -> None:
    admission = await ledger.admit(sign_alice(alice, clock), hold=100)
    assert admission.hold_id is not None

    after = await ledger.settle(admission.hold_id, 2**70)

    assert (after.balance, after.held) == (900, 0)


async def test_add_peer_refuses_bad_ids_and_duplicates(
    ledger: Ledger, alice: str
) -> None:
    with pytest.raises(PeerError):
        await ledger.add_peer("Not Valid", new_secret(), actor="op")
    with pytest.raises(PeerError, match="already exists"):
        await ledger.add_peer("alice", new_secret(), credits=50, actor="op")
    assert (await ledger.balance("alice")).balance == 1000


@pytest.mark.parametrize("cause", ["bad signature", "unknown peer", "disabled peer"])
async def test_admit_refuses_a_request_it_cannot_verify(
    ledger: Ledger, alice: str, clock: Clock, cause: str
) -> None:
    nonce = new_nonce()
    if cause == "bad signature":
        request = signed("alice", new_secret(), now=clock(), nonce=nonce)
    elif cause == "unknown peer":
        request = signed("mallory", alice, now=clock(), nonce=nonce)
    else:
        await ledger.set_peer_enabled("alice", False, actor="op")
        request = sign_alice(alice, clock, nonce)

    with pytest.raises(Unauthorized) as raised:
        await ledger.admit(request, hold=10)

    assert raised.value.message == Unauthorized().message
    assert (await ledger.balance("alice")).held == 0
    # Nothing was written, the nonce included: the genuine request still passes.
    await ledger.set_peer_enabled("alice", True, actor="op")
    assert (await ledger.admit(sign_alice(alice, clock, nonce))).peer == "alice"


async def test_a_nonce_is_refused_the_second_time_even_after_reopening(
    tmp_path: Path, clock: Clock
) -> None:
    path = tmp_path / "ledger.db"
    secret = new_secret()
    first = await Ledger.open(path, clock=clock)
    await first.add_peer("alice", secret, actor="test")
    request = sign_alice(secret, clock)
    await first.admit(request)
    with pytest.raises(Unauthorized):
        await first.admit(request)
    await first.close()

    second = await Ledger.open(path, clock=clock)
    try:
        with pytest.raises(Unauthorized):
            await second.admit(request)
    finally:
        await second.close()


async def test_a_stale_timestamp_is_refused(
    ledger: Ledger, alice: str, clock: Clock
) -> None:
    request = sign_alice(alice, clock)
    clock.now += 301

    with pytest.raises(Unauthorized):
        await ledger.admit(request)


async def test_a_hold_beyond_available_holds_nothing_and_spends_the_nonce(
    ledger: Ledger, alice: str, clock: Clock
) -> None:
    request = sign_alice(alice, clock)

    with pytest.raises(InsufficientCredits) as raised:
        await ledger.admit(request, hold=1001, idempotency=("key-1", "sha"))

    assert raised.value.status == 402
    money = await ledger.balance("alice")
    assert (money.balance, money.held) == (1000, 0)
    with pytest.raises(Unauthorized):
        await ledger.admit(request)
    # The refused request's idempotency key is free for the retry.
    retry = await ledger.admit(
        sign_alice(alice, clock), hold=10, idempotency=("key-1", "sha")
    )
    assert retry.hold_id is not None


async def test_a_gate_refusal_spends_the_nonce_and_holds_nothing(
    ledger: Ledger, alice: str, clock: Clock
) -> None:
    await ledger.set_peer_limits("alice", requests_per_minute=7, max_in_flight=None)
    seen: list[tuple[str, tuple[int | None, int | None]]] = []

    def gate(peer: str, own_limits: tuple[int | None, int | None]) -> None:
        seen.append((peer, own_limits))
        raise RateLimited("slow down", retry_after_s=2.0)

    request = sign_alice(alice, clock)
    with pytest.raises(RateLimited):
        await ledger.admit(request, hold=10, gate=gate)

    assert seen == [("alice", (7, None))]
    assert (await ledger.balance("alice")).held == 0
    assert (await ledger.peer("alice")).last_seen == clock()
    with pytest.raises(Unauthorized):
        await ledger.admit(request)


async def test_after_rotation_both_secrets_verify_until_the_grace_passes(
    ledger: Ledger, alice: str, clock: Clock
) -> None:
    fresh = new_secret()
    await ledger.rotate_peer("alice", fresh, grace_s=60, actor="op")

    await ledger.admit(sign_alice(alice, clock))
    await ledger.admit(sign_alice(fresh, clock))
    clock.now += 61

    with pytest.raises(Unauthorized):
        await ledger.admit(sign_alice(alice, clock))
    assert (await ledger.admit(sign_alice(fresh, clock))).peer == "alice"


async def test_the_files_are_private(ledger: Ledger, alice: str) -> None:
    files = [
        ledger.path,
        *(ledger.path.with_name(ledger.path.name + s) for s in ("-wal", "-shm")),
    ]

    modes = {f.name: stat.S_IMODE(f.stat().st_mode) for f in files}

    assert modes == {f.name: 0o600 for f in files}
    assert stat.S_IMODE(ledger.path.parent.stat().st_mode) == 0o700


async def test_opening_narrows_a_ledger_file_others_could_read(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    path.touch(mode=0o644)
    path.chmod(0o644)

    async with await Ledger.open(path) as ledger:
        mode = stat.S_IMODE(ledger.path.stat().st_mode)

    assert mode == 0o600


async def test_transfers_cannot_be_changed_or_deleted(
    ledger: Ledger, alice: str
) -> None:
    raw = sqlite3.connect(ledger.path)
    try:
        for statement in ("UPDATE transfers SET amount = 1", "DELETE FROM transfers"):
            with pytest.raises(sqlite3.IntegrityError, match="immutable"):
                raw.execute(statement)
    finally:
        raw.close()


async def test_check_invariants_notices_a_balance_changed_behind_its_back(
    ledger: Ledger, alice: str
) -> None:
    tamper(ledger.path, +5)

    with pytest.raises(RuntimeError, match="sum to 5"):
        await ledger.check_invariants()

    tamper(ledger.path, -5)
    await ledger.check_invariants()


def tamper(path: Path, amount: int) -> None:
    raw = sqlite3.connect(path, isolation_level=None)
    raw.execute(
        "UPDATE accounts SET balance = balance + ? WHERE id = 'peer:alice'", (amount,)
    )
    raw.close()


async def test_reopening_releases_every_open_hold(tmp_path: Path, clock: Clock) -> None:
    path = tmp_path / "ledger.db"
    secret = new_secret()
    first = await Ledger.open(path, clock=clock)
    await first.add_peer("alice", secret, credits=1000, actor="test")
    for amount in (100, 200, 300):
        await first.admit(sign_alice(secret, clock), hold=amount)
    await first.close()

    second = await Ledger.open(path, clock=clock)
    try:
        released = await second.release_stale_holds()
        money = await second.balance("alice")
        again = await second.release_stale_holds()
        await second.check_invariants()
    finally:
        await second.close()

    assert released == 3
    assert (money.balance, money.held) == (1000, 0)
    assert again == 0


async def test_only_expired_holds_are_released_by_expiry(
    ledger: Ledger, alice: str, clock: Clock
) -> None:
    short = await ledger.admit(sign_alice(alice, clock), hold=100, hold_ttl_s=10)
    await ledger.admit(sign_alice(alice, clock), hold=200, hold_ttl_s=100)
    clock.now += 11

    released = await ledger.release_expired_holds()

    assert released == 1
    assert (await ledger.balance("alice")).held == 200
    assert short.hold_id is not None
    assert (await ledger.settle(short.hold_id, 100)).held == 200


async def test_an_idempotent_retry_replays_the_stored_answer(
    ledger: Ledger, alice: str, clock: Clock
) -> None:
    sha = hashlib.sha256(BODY).hexdigest()
    first = await ledger.admit(
        sign_alice(alice, clock), hold=100, idempotency=("k", sha)
    )
    assert first.hold_id is not None
    with pytest.raises(IdempotencyConflict, match="still in progress"):
        await ledger.admit(sign_alice(alice, clock), hold=100, idempotency=("k", sha))
    answer = ("k", 200, "application/json", b'{"ok": true}')
    await ledger.settle(first.hold_id, 40, idempotency=answer)

    retry = await ledger.admit(
        sign_alice(alice, clock), hold=100, idempotency=("k", sha)
    )

    assert retry.replay == (200, "application/json", b'{"ok": true}')
    assert retry.hold_id is None
    assert (await ledger.balance("alice")).balance == 960
    with pytest.raises(IdempotencyConflict) as raised:
        await ledger.admit(
            sign_alice(alice, clock), hold=100, idempotency=("k", "other")
        )
    assert raised.value.status == 409


async def test_idempotency_keys_are_forgotten_after_a_day(
    ledger: Ledger, alice: str, clock: Clock
) -> None:
    await ledger.admit(sign_alice(alice, clock), idempotency=("k", "a"))
    await ledger.record(
        record("alice", "r", 0), idempotency=("k", 200, "text/plain", b"x")
    )
    clock.now += 24 * 3600 + 1

    fresh = await ledger.admit(sign_alice(alice, clock), idempotency=("k", "b"))
    await ledger.prune()

    assert fresh.replay is None


async def test_a_released_request_frees_its_idempotency_key(
    ledger: Ledger, alice: str, clock: Clock
) -> None:
    first = await ledger.admit(
        sign_alice(alice, clock), hold=10, idempotency=("k", "a")
    )
    assert first.hold_id is not None
    await ledger.release(first.hold_id, idempotency_key="k")

    retry = await ledger.admit(
        sign_alice(alice, clock), hold=10, idempotency=("k", "a")
    )

    assert retry.hold_id is not None and retry.replay is None


async def test_peers_and_requests_report_what_happened(
    ledger: Ledger, alice: str, clock: Clock
) -> None:
    await ledger.add_peer("bob", new_secret(), actor="op", max_in_flight=4)
    admission = await ledger.admit(sign_alice(alice, clock), hold=50)
    assert admission.hold_id is not None
    await ledger.settle(admission.hold_id, 30, record=record("alice", "r-1", 30))
    await ledger.record(record("bob", "r-2", 0))
    await ledger.set_peer_limits("alice", requests_per_minute=10, max_in_flight=None)

    listed = {p.id: p for p in await ledger.peers()}
    requests = await ledger.requests()

    assert listed["alice"].balance == 970
    assert (listed["alice"].requests_1h, listed["alice"].requests_per_minute) == (1, 10)
    assert (listed["bob"].balance, listed["bob"].max_in_flight) == (0, 4)
    assert [r.request_id for r in requests] == ["r-2", "r-1"]
    with pytest.raises(UnknownPeer):
        await ledger.peer("carol")


async def test_a_refused_op_leaves_the_rest_of_its_batch_whole(
    ledger: Ledger, alice: str
) -> None:
    grants = [ledger.grant("alice", 10, reason="tip", actor="op") for _ in range(20)]
    refused = ledger.deduct("alice", 10**9, reason="too much", actor="op")

    outcomes = await asyncio.gather(*grants, refused, return_exceptions=True)

    assert isinstance(outcomes[-1], InsufficientCredits)
    assert all(t.kind == "grant" for t in outcomes[:-1])  # type: ignore[union-attr]
    assert (await ledger.balance("alice")).balance == 1200


async def test_concurrent_writes_share_one_commit(ledger: Ledger, alice: str) -> None:
    batches_before = ledger._writer.batches

    await asyncio.gather(
        *(ledger.grant("alice", 1, reason="tip", actor="op") for _ in range(100))
    )

    assert ledger._writer.batches - batches_before <= 2
    assert (await ledger.balance("alice")).balance == 1100


async def test_a_finished_request_keeps_its_answer_made_from_the_new_balance(
    ledger: Ledger, alice: str, clock: Clock
) -> None:
    first = await ledger.admit(
        sign_alice(alice, clock), hold=500, idempotency=("k", "sha")
    )
    assert first.hold_id is not None

    def keep(after: Balance) -> tuple[str, int, str, bytes]:
        return "k", 201, "text/event-stream", f"balance {after.balance}".encode()

    after = await ledger.finish(
        "alice", first.hold_id, 120, record=record("alice", "r", 120), keep=keep
    )
    retry = await ledger.admit(sign_alice(alice, clock), idempotency=("k", "sha"))

    assert after.balance == 880
    assert retry.replay == (201, "text/event-stream", b"balance 880")


async def test_an_answer_that_cannot_be_kept_leaves_the_hold_open(
    ledger: Ledger, alice: str, clock: Clock
) -> None:
    first = await ledger.admit(
        sign_alice(alice, clock), hold=500, idempotency=("k", "sha")
    )
    assert first.hold_id is not None

    def keep(after: Balance) -> tuple[str, int, str, bytes]:
        raise RuntimeError("cannot render")

    with pytest.raises(RuntimeError):
        await ledger.finish(
            "alice", first.hold_id, 120, record=record("alice", "r", 120), keep=keep
        )

    # Charge, log and answer are one op: none of them happened.
    assert (await ledger.balance("alice")).held == 500
    assert await ledger.requests() == []


async def test_a_start_forgets_keys_whose_requests_a_crash_ended(
    ledger: Ledger, alice: str, clock: Clock
) -> None:
    await ledger.admit(sign_alice(alice, clock), hold=500, idempotency=("k", "sha"))
    with pytest.raises(IdempotencyConflict, match="in progress"):
        await ledger.admit(sign_alice(alice, clock), idempotency=("k", "sha"))

    assert await ledger.release_stale_holds() == 1

    retry = await ledger.admit(sign_alice(alice, clock), idempotency=("k", "sha"))
    assert retry.replay is None


async def test_a_caller_that_leaves_does_not_leave_its_hold(
    ledger: Ledger, alice: str, clock: Clock
) -> None:
    task = asyncio.create_task(ledger.admit(sign_alice(alice, clock), hold=500))
    await asyncio.sleep(0)  # let the task queue its admission, then leave
    task.cancel()

    await poll(
        lambda: ledger.transfers("alice", limit=2),
        lambda last: [t.kind for t in last] == ["release", "hold"],
    )

    money = await ledger.balance("alice")
    assert (money.balance, money.held) == (1000, 0)
    assert task.cancelled()


async def test_a_locked_database_is_waited_for_not_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ledger_schema, "BUSY_TIMEOUT_MS", 20)
    ledger = await Ledger.open(tmp_path / "ledger.db")
    await ledger.add_peer("alice", new_secret(), actor="test")
    blocker = sqlite3.connect(ledger.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        grant = asyncio.create_task(ledger.grant("alice", 5, reason="x", actor="op"))
        await poll(lambda: _retries(ledger), lambda n: n > 0)
        blocker.execute("COMMIT")
        made = await grant
        money = await ledger.balance("alice")
    finally:
        blocker.close()
        await ledger.close()

    assert made.amount == 5
    assert money.balance == 5


async def _retries(ledger: Ledger) -> int:
    return ledger._writer.retries


_SECOND_PROCESS = """
import asyncio, sys
from pathlib import Path
from meld_core.ledger import Ledger

async def main():
    ledger = await Ledger.open(Path(sys.argv[1]))
    print("ready", flush=True)
    sys.stdin.readline()
    for n in range(200):
        await ledger.grant("alice", 3, reason=f"grant {n}", actor="cli")
    await ledger.close()

asyncio.run(main())
"""


async def test_a_second_process_writes_while_this_one_holds(
    ledger: Ledger, alice: str, clock: Clock
) -> None:
    await ledger.grant("alice", 100_000, reason="float", actor="test")
    requests = [sign_alice(alice, clock) for _ in range(200)]
    cli = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        _SECOND_PROCESS,
        str(ledger.path),
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    assert cli.stdout is not None and cli.stdin is not None
    assert await cli.stdout.readline() == b"ready\n"

    cli.stdin.write(b"go\n")
    await cli.stdin.drain()
    admissions = await asyncio.gather(*(ledger.admit(r, hold=7) for r in requests))
    _, stderr = await cli.communicate()

    assert cli.returncode == 0, stderr.decode()
    assert b"locked" not in stderr
    assert len({a.hold_id for a in admissions}) == 200
    money = await ledger.balance("alice")
    assert (money.balance, money.held) == (1000 + 100_000 + 600, 1400)
    totals = await ledger.totals()
    assert totals["node:issued"] == -(1000 + 100_000 + 600)


async def poll(
    read: Callable[[], Awaitable[T]], done: Callable[[T], bool], deadline_s: float = 5.0
) -> T:
    """Read until `done` holds, failing after a bounded deadline."""
    give_up = time.monotonic() + deadline_s
    while True:
        value = await read()
        if done(value):
            return value
        assert time.monotonic() < give_up, f"still {value!r} after {deadline_s}s"
        await asyncio.sleep(0.005)
