"""`peers` and `credits`: the operator's changes to the ledger, straight to SQLite.

The ledger is safe to share with a running node (WAL, busy timeout), so these
commands work whether or not the node is up, and a running node sees them at once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from meld_core.config import Config
from meld_core.ledger import Ledger
from meld_core.signing import new_secret
from meld_core.types import PeerRecord, Transfer

from .common import (
    actor,
    fail,
    non_negative_int,
    peer_id,
    positive_int,
    read_config,
    reason,
    table,
    when,
)

ROTATE_GRACE_S = 3600
_UNSET = object()  # a limit flag not given, unlike 'default', which is None
STATEMENT_LIMIT = 20


def add_parsers(
    commands: argparse._SubParsersAction[Any], common: argparse.ArgumentParser
) -> None:
    """Register `peers ...` and `credits ...`."""
    _add_peer_parsers(commands, common)
    _add_credit_parsers(commands, common)


def _add_peer_parsers(
    commands: argparse._SubParsersAction[Any], common: argparse.ArgumentParser
) -> None:
    peers = commands.add_parser("peers", parents=[common], help="administer peers")
    peer_commands = peers.add_subparsers(dest="action", required=True, metavar="ACTION")

    add = peer_commands.add_parser(
        "add", parents=[common], help="register a peer and print its secret once"
    )
    add.add_argument("id", type=peer_id, metavar="ID", help="the new peer's id")
    add.add_argument(
        "--credits", type=non_negative_int, default=0, metavar="N",
        help="credit units to grant it at once (default 0)",
    )  # fmt: skip
    add.add_argument("--json", action="store_true", help="print JSON for scripts")
    add.set_defaults(run=peers_add)

    listing = peer_commands.add_parser(
        "list", parents=[common], help="list peers and balances (never secrets)"
    )
    listing.add_argument("--json", action="store_true", help="print JSON for scripts")
    listing.set_defaults(run=peers_list)

    for name, enabled, text in (
        ("disable", False, "refuse a peer's requests from now on"),
        ("enable", True, "accept a disabled peer's requests again"),
    ):
        toggle = peer_commands.add_parser(name, parents=[common], help=text)
        toggle.add_argument("id", type=peer_id, metavar="ID", help="the peer's id")
        toggle.set_defaults(run=peers_toggle, enabled=enabled)

    rotate = peer_commands.add_parser(
        "rotate",
        parents=[common],
        help="give a peer a new secret; the old one works for one more hour",
    )
    rotate.add_argument("id", type=peer_id, metavar="ID", help="the peer's id")
    rotate.add_argument("--json", action="store_true", help="print JSON for scripts")
    rotate.set_defaults(run=peers_rotate)

    limits = peer_commands.add_parser(
        "limits",
        parents=[common],
        help="set a peer's own limits; 'default' falls back to the node's [limits]",
    )
    limits.add_argument("id", type=peer_id, metavar="ID", help="the peer's id")
    for flag, what in (
        ("--requests-per-minute", "requests a minute"),
        ("--max-in-flight", "requests in flight at once"),
    ):
        limits.add_argument(
            flag, type=_limit, default=_UNSET, metavar="N|default",
            help=f"{what}; without it the peer's setting stays as it is",
        )  # fmt: skip
    limits.set_defaults(run=peers_limits)


def _add_credit_parsers(
    commands: argparse._SubParsersAction[Any], common: argparse.ArgumentParser
) -> None:
    credits = commands.add_parser("credits", parents=[common], help="adjust credits")
    credit_commands = credits.add_subparsers(
        dest="action", required=True, metavar="ACTION"
    )
    for name, text in (
        ("grant", "add credit units to a peer's balance"),
        ("deduct", "take credit units from a peer's available amount"),
    ):
        change = credit_commands.add_parser(name, parents=[common], help=text)
        change.add_argument("id", type=peer_id, metavar="ID", help="the peer's id")
        change.add_argument(
            "amount", type=positive_int, metavar="N", help="credit units"
        )
        change.add_argument(
            "--reason", type=reason, required=True, metavar="TEXT",
            help="why, recorded with the transfer",
        )  # fmt: skip
        change.set_defaults(run=credits_change, kind=name)

    show = credit_commands.add_parser(
        "show", parents=[common], help="a peer's balance and recent transfers"
    )
    show.add_argument("id", type=peer_id, metavar="ID", help="the peer's id")
    show.add_argument(
        "--limit", type=positive_int, default=STATEMENT_LIMIT, metavar="N",
        help=f"how many recent transfers (default {STATEMENT_LIMIT})",
    )  # fmt: skip
    show.add_argument("--json", action="store_true", help="print JSON for scripts")
    show.set_defaults(run=credits_show)


@asynccontextmanager
async def _ledger(config: Config, *, create: bool = False) -> AsyncIterator[Ledger]:
    """The ledger, opened; only `create` makes one where there is none."""
    path = config.db_path
    if path.exists():
        _check_readable(path)
    elif not create:
        fail(f"no ledger exists at {path}")
    ledger = await Ledger.open(path)
    try:
        yield ledger
    finally:
        await ledger.close()


def peers_add(args: argparse.Namespace) -> int:
    """Register a peer and print its secret, the only time it is shown."""
    config = read_config(args)
    secret = new_secret()

    async def act() -> PeerRecord:
        async with _ledger(config, create=True) as ledger:
            return await ledger.add_peer(
                args.id, secret, credits=args.credits, actor=actor()
            )

    record = asyncio.run(act())
    if args.json:
        print(
            json.dumps({"id": record.id, "secret": secret, "balance": record.balance})
        )
        return 0
    print(f"peer {record.id} added with {record.balance} credit units.")
    print()
    print(f"    {secret}")
    print()
    print("This is the peer's secret. Store it now, for example in the agent's")
    print("environment: it is shown only this once. If it is lost, rotate it with")
    print(f"'meld-console peers rotate {record.id}'.")
    return 0


def peers_list(args: argparse.Namespace) -> int:
    """List every peer with its money and activity; secrets are never shown."""
    config = read_config(args)

    async def act() -> list[PeerRecord]:
        async with _ledger(config) as ledger:
            return await ledger.peers()

    records = asyncio.run(act())
    if args.json:
        print(json.dumps([_peer_json(r) for r in records], indent=2))
        return 0
    if not records:
        print("no peers yet: add one with 'meld-console peers add ID'")
        return 0
    rows = [
        (
            r.id,
            "yes" if r.enabled else "no",
            r.balance,
            r.held,
            r.available,
            r.requests_1h,
            when(r.last_seen),
        )
        for r in records
    ]
    headers = ("peer", "enabled", "balance", "held", "available", "req/1h", "last seen")
    print(table(headers, rows))
    return 0


def _peer_json(record: PeerRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "enabled": record.enabled,
        "balance": record.balance,
        "held": record.held,
        "available": record.available,
        "requests_1h": record.requests_1h,
        "created_at": record.created_at,
        "last_seen": record.last_seen,
        "requests_per_minute": record.requests_per_minute,
        "max_in_flight": record.max_in_flight,
    }


def peers_toggle(args: argparse.Namespace) -> int:
    """Enable or disable a peer."""
    config = read_config(args)

    async def act() -> None:
        async with _ledger(config) as ledger:
            await ledger.set_peer_enabled(args.id, args.enabled, actor=actor())

    asyncio.run(act())
    if args.enabled:
        print(f"peer {args.id} enabled: its signed requests are accepted again.")
    else:
        print(f"peer {args.id} disabled: its requests are refused from now on.")
    return 0


def peers_rotate(args: argparse.Namespace) -> int:
    """Give a peer a new secret, printed once; the old one expires after a grace."""
    config = read_config(args)
    secret = new_secret()

    async def act() -> None:
        async with _ledger(config) as ledger:
            await ledger.rotate_peer(
                args.id, secret, grace_s=ROTATE_GRACE_S, actor=actor()
            )

    asyncio.run(act())
    expires = time.time() + ROTATE_GRACE_S
    if args.json:
        body = {"id": args.id, "secret": secret, "old_secret_expires_at": expires}
        print(json.dumps(body))
        return 0
    print(f"peer {args.id} has a new secret.")
    print()
    print(f"    {secret}")
    print()
    print("Store it now: it is shown only this once. The old secret keeps working")
    print(f"for {ROTATE_GRACE_S // 60} minutes, until {when(expires)}, then stops.")
    return 0


def _limit(text: str) -> int | None:
    """A limit as typed: a positive whole number, or 'default' for the node's."""
    return None if text == "default" else positive_int(text)


def peers_limits(args: argparse.Namespace) -> int:
    """Set a peer's own requests-per-minute and in-flight limits."""
    config = read_config(args)
    given = {
        name: getattr(args, name)
        for name in ("requests_per_minute", "max_in_flight")
        if getattr(args, name) is not _UNSET
    }
    if not given:
        fail("name --requests-per-minute, --max-in-flight or both", status=2)

    async def act() -> PeerRecord:
        async with _ledger(config) as ledger:
            record = await ledger.peer(args.id)
            await ledger.set_peer_limits(
                args.id,
                requests_per_minute=given.get(
                    "requests_per_minute", record.requests_per_minute
                ),
                max_in_flight=given.get("max_in_flight", record.max_in_flight),
            )
            return await ledger.peer(args.id)

    record = asyncio.run(act())
    node = config.limits
    rpm = _shown(record.requests_per_minute, node.requests_per_minute)
    in_flight = _shown(record.max_in_flight, node.max_in_flight)
    print(f"peer {record.id}: {rpm} requests a minute, {in_flight} in flight.")
    return 0


def _shown(own: int | None, node_default: int) -> str:
    return f"{node_default} (the node's default)" if own is None else str(own)


def credits_change(args: argparse.Namespace) -> int:
    """Grant or deduct credit units, recorded with a reason and the operator."""
    config = read_config(args)

    async def act() -> tuple[Transfer, int]:
        async with _ledger(config) as ledger:
            change = ledger.grant if args.kind == "grant" else ledger.deduct
            transfer = await change(
                args.id, args.amount, reason=args.reason, actor=actor()
            )
            return transfer, (await ledger.balance(args.id)).balance

    transfer, balance = asyncio.run(act())
    verb = "granted to" if args.kind == "grant" else "deducted from"
    print(
        f"{transfer.amount} credit units {verb} {args.id} (transfer {transfer.id}); "
        f"balance now {balance}."
    )
    return 0


def credits_show(args: argparse.Namespace) -> int:
    """A peer's balance, held and available amounts, and its recent transfers."""
    config = read_config(args)

    async def act() -> tuple[Any, list[Transfer]]:
        async with _ledger(config) as ledger:
            balance = await ledger.balance(args.id)
            return balance, await ledger.transfers(args.id, limit=args.limit)

    balance, transfers = asyncio.run(act())
    if args.json:
        body = {
            "peer": args.id,
            "balance": balance.balance,
            "held": balance.held,
            "available": balance.available,
            "recent": [{**t.as_json(), "actor": t.actor} for t in transfers],
        }
        print(json.dumps(body, indent=2))
        return 0
    print(
        f"peer {args.id}: balance {balance.balance}, held {balance.held}, "
        f"available {balance.available} credit units"
    )
    if not transfers:
        print("no transfers yet.")
        return 0
    print()
    rows = [
        (t.id, when(t.at), t.kind, _effect(t), t.reason, t.actor) for t in transfers
    ]
    print(table(("id", "at", "kind", "amount", "reason", "by"), rows))
    return 0


def _effect(transfer: Transfer) -> str:
    """The amount with the sign of its effect on the balance; holds move none."""
    sign = {"grant": "+", "deduct": "-", "settle": "-"}.get(transfer.kind, "")
    return f"{sign}{transfer.amount}"


def _check_readable(path: Path) -> None:
    """Fail in one line on a file SQLite cannot read as a database."""
    # Ledger.open on such a file also prints a traceback from aiosqlite's thread.
    try:
        conn = sqlite3.connect(path)
        try:
            conn.execute("PRAGMA schema_version").fetchone()
        finally:
            conn.close()
    except sqlite3.DatabaseError as exc:
        fail(f"{path}: cannot read the ledger: {exc}")
