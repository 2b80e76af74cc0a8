"""The ledger against a plain Python model, driven by random sequences of operations."""

from __future__ import annotations

import asyncio
import shutil
import sqlite3
import tempfile
from collections.abc import Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    Bundle,
    RuleBasedStateMachine,
    consumes,
    invariant,
    rule,
)

from meld_core.errors import InsufficientCredits
from meld_core.ledger import Ledger
from meld_core.signing import new_secret, parse_signed, signed_headers

T = TypeVar("T")
PEER_IDS = ("alice", "bob", "carol")


@dataclass
class ModelHold:
    peer: str
    amount: int
    state: str = "open"


class LedgerMachine(RuleBasedStateMachine):
    """Every step runs on a real ledger file and on the model; they must agree."""

    peers = Bundle("peers")
    holds = Bundle("holds")

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.directory = Path(tempfile.mkdtemp(prefix="ledger-machine-"))
        self.path = self.directory / "ledger.db"
        self.ledger = self.run(Ledger.open(self.path))
        self.secrets: dict[str, str] = {}
        self.available: dict[str, int] = {}
        self.model_holds: dict[int, ModelHold] = {}
        self.revenue = 0

    def run(self, coroutine: Coroutine[Any, Any, T]) -> T:
        return self.loop.run_until_complete(coroutine)

    def teardown(self) -> None:
        self.run(self.ledger.close())
        self.loop.close()
        shutil.rmtree(self.directory)

    @rule(target=peers, peer=st.sampled_from(PEER_IDS), credits=st.integers(0, 1000))
    def add_peer(self, peer: str, credits: int) -> str:
        if peer not in self.secrets:
            self.secrets[peer] = new_secret()
            self.run(
                self.ledger.add_peer(
                    peer, self.secrets[peer], credits=credits, actor="model"
                )
            )
            self.available[peer] = credits
        return peer

    @rule(peer=peers, amount=st.integers(1, 500))
    def grant(self, peer: str, amount: int) -> None:
        self.run(self.ledger.grant(peer, amount, reason="model grant", actor="model"))
        self.available[peer] += amount

    @rule(peer=peers, amount=st.integers(1, 1500))
    def deduct(self, peer: str, amount: int) -> None:
        try:
            self.run(self.ledger.deduct(peer, amount, reason="model", actor="model"))
        except InsufficientCredits:
            assert amount > self.available[peer]
        else:
            assert amount <= self.available[peer]
            self.available[peer] -= amount

    @rule(target=holds, peer=peers, amount=st.integers(1, 800))
    def hold(self, peer: str, amount: int) -> int:
        headers = signed_headers(peer, self.secrets[peer], "POST", "/v1/x", b"")
        lower = {name.lower(): value for name, value in headers.items()}
        request = parse_signed(lower.get, "POST", "/v1/x", b"")
        assert request is not None
        try:
            admission = self.run(self.ledger.admit(request, hold=amount))
        except InsufficientCredits:
            assert amount > self.available[peer]
            return -1
        assert (
            admission.hold_id is not None and admission.hold_id not in self.model_holds
        )
        self.available[peer] -= amount
        self.model_holds[admission.hold_id] = ModelHold(peer, amount)
        return admission.hold_id

    @rule(hold_id=holds, charge=st.integers(0, 1000))
    def settle(self, hold_id: int, charge: int) -> None:
        if hold_id < 0:
            return
        self.run(self.ledger.settle(hold_id, charge))
        self.resolve(hold_id, "settled", charge)

    @rule(hold_id=holds)
    def release(self, hold_id: int) -> None:
        if hold_id < 0:
            return
        self.run(self.ledger.release(hold_id))
        self.resolve(hold_id, "released", 0)

    @rule(hold_id=consumes(holds), charge=st.integers(0, 1000))
    def settle_again(self, hold_id: int, charge: int) -> None:
        if hold_id < 0:
            return
        self.run(self.ledger.settle(hold_id, charge))
        self.resolve(hold_id, "settled", charge)
        before = self.run(self.ledger.totals())
        self.run(self.ledger.settle(hold_id, charge + 1))
        assert self.run(self.ledger.totals()) == before

    @rule()
    def restart(self) -> None:
        self.run(self.ledger.close())
        self.ledger = self.run(Ledger.open(self.path))
        released = self.run(self.ledger.release_stale_holds())
        still_open = [
            h for h in self.model_holds if self.model_holds[h].state == "open"
        ]
        assert released == len(still_open)
        for hold_id in still_open:
            self.resolve(hold_id, "released", 0)

    def resolve(self, hold_id: int, state: str, charge: int) -> None:
        hold = self.model_holds[hold_id]
        if hold.state != "open":
            return
        charged = min(charge, hold.amount) if state == "settled" else 0
        hold.state = state
        self.revenue += charged
        self.available[hold.peer] += hold.amount - charged

    @invariant()
    def books_match_the_model(self) -> None:
        totals = self.run(self.ledger.totals())
        assert sum(totals.values()) == 0
        assert totals["node:revenue"] == self.revenue
        for peer, available in self.available.items():
            held = sum(
                h.amount
                for h in self.model_holds.values()
                if h.peer == peer and h.state == "open"
            )
            assert totals[f"peer:{peer}"] == available >= 0
            assert totals[f"held:{peer}"] == held >= 0
        self.run(self.ledger.check_invariants())

    @invariant()
    def no_hold_is_resolved_twice(self) -> None:
        with sqlite3.connect(self.path) as raw:
            twice = raw.execute(
                "SELECT hold_id, kind FROM transfers"
                " WHERE kind IN ('settle', 'release')"
                " GROUP BY hold_id, kind HAVING COUNT(*) > 1"
            ).fetchall()
            states = dict(raw.execute("SELECT id, state FROM holds").fetchall())
        raw.close()
        assert twice == []
        assert states == {h: m.state for h, m in self.model_holds.items()}


LedgerMachine.TestCase.settings = settings(
    max_examples=30, stateful_step_count=30, deadline=None
)
TestLedgerMachine = LedgerMachine.TestCase
