"""Every money and peer action, driven by keys through the real app and node."""

from __future__ import annotations

from pathlib import Path

import httpx

from meld_console.app import MeldConsole
from meld_console.screens import (
    ConfirmDialog,
    CreditDialog,
    NewPeerDialog,
    PeersScreen,
    SecretDialog,
    StatementScreen,
)
from meld_console.widgets import PeerTable
from meld_core.config import Config
from meld_core.node import Node
from meld_core.signing import SECRET_PATTERN, MeldAuth

from .conftest import console, until
from .screen_text import screen_text


async def open_peers(app: MeldConsole, pilot, peer_id: str) -> PeerTable:  # type: ignore[no-untyped-def]
    """Switch to the Peers screen and put the cursor on `peer_id`."""
    await pilot.press("2")
    await until(lambda: isinstance(app.screen, PeersScreen), pilot, what="peers screen")
    table = app.screen.query_one(PeerTable)
    await until(lambda: peer_id in table.rows, pilot, what=f"{peer_id} listed")
    table.move_cursor(row=table.get_row_index(peer_id))
    table.focus()
    await pilot.pause()
    return table


async def test_a_grant_changes_the_balance_by_its_amount_and_records_the_reason(
    config: Config,
) -> None:
    async with console(config) as (app, node, pilot):
        await node.add_peer("agent-1", credits=100)
        await open_peers(app, pilot, "agent-1")

        await pilot.press("g")
        assert isinstance(app.screen, CreditDialog)
        assert app.focused is not None and app.focused.id == "cancel"
        await pilot.press("tab", *"250", "tab", *"outage", "enter", "enter")

        balance = lambda: node.ledger.balance("agent-1")  # noqa: E731
        await until(lambda: _is(balance(), 350), pilot, what="the grant")
        transfers = await node.statement("agent-1")
        grants = [t for t in transfers if t.kind == "grant" and t.amount == 250]
        assert len(grants) == 1
        assert grants[0].reason == "outage"
        assert grants[0].actor.startswith("console")


async def _is(balance_call, expected: int) -> bool:  # type: ignore[no-untyped-def]
    return (await balance_call).balance == expected


async def test_the_credit_dialog_shows_the_balance_after_the_change(
    config: Config,
) -> None:
    async with console(config) as (app, node, pilot):
        await node.add_peer("agent-1", credits=1000)
        await open_peers(app, pilot, "agent-1")
        await pilot.press("d", "tab", *"300")
        text = screen_text(app)
        assert "balance 1 000" in text
        assert "balance after: 700" in text


async def test_the_credit_dialog_reads_the_balance_afresh_from_the_ledger(
    config: Config,
) -> None:
    async with console(config) as (app, node, pilot):
        await node.add_peer("agent-1", credits=1000)
        await open_peers(app, pilot, "agent-1")
        await pilot.press("p")  # paused: the table keeps its 1 000
        await node.grant("agent-1", 500, reason="from the CLI", actor="cli")

        await pilot.press("d", "tab", *"300")
        await until(
            lambda: "balance after: 1 200" in screen_text(app), pilot, what="fresh"
        )
        assert "balance 1 500" in screen_text(app)


async def test_a_deduct_changes_the_balance_by_its_amount_and_records_the_reason(
    config: Config,
) -> None:
    async with console(config) as (app, node, pilot):
        await node.add_peer("agent-1", credits=1000)
        await open_peers(app, pilot, "agent-1")

        await pilot.press("d")
        await until(lambda: "balance 1 000" in screen_text(app), pilot, what="read")
        await pilot.press("tab", *"275", "enter", *"refund error", "enter", "enter")

        balance = lambda: node.ledger.balance("agent-1")  # noqa: E731
        await until(lambda: _is(balance(), 725), pilot, what="the deduct")
        transfers = await node.statement("agent-1")
        deducts = [t for t in transfers if t.kind == "deduct"]
        assert [(t.amount, t.reason) for t in deducts] == [(275, "refund error")]
        assert deducts[0].actor.startswith("console")


async def test_cancel_changes_nothing(config: Config) -> None:
    async with console(config) as (app, node, pilot):
        await node.add_peer("agent-1", credits=100)
        await open_peers(app, pilot, "agent-1")
        before = await node.statement("agent-1")

        await pilot.press("g", "tab", *"500", "tab", *"t", "tab")
        assert app.focused is not None and app.focused.id == "cancel"
        await pilot.press("enter")
        await pilot.press("g", "enter")  # opens on Cancel: Enter alone cancels
        await pilot.press("d", "tab", *"50", "escape")
        await pilot.pause()

        assert isinstance(app.screen, PeersScreen)
        assert (await node.ledger.balance("agent-1")).balance == 100
        assert await node.statement("agent-1") == before


async def test_a_deduct_over_the_available_amount_cannot_be_confirmed(
    config: Config,
) -> None:
    async with console(config) as (app, node, pilot):
        await node.add_peer("agent-1", credits=100)
        await open_peers(app, pilot, "agent-1")
        await pilot.press("d", "tab", *"101", "tab", *"x", "enter")
        dialog = app.screen
        assert isinstance(dialog, CreditDialog)
        assert dialog.query_one("#confirm").disabled
        assert "refused" in screen_text(app)
        await pilot.press("escape")
        assert (await node.ledger.balance("agent-1")).balance == 100


async def test_read_only_refuses_every_change(config: Config) -> None:
    async with console(config, read_only=True) as (app, node, pilot):
        await node.add_peer("agent-1", credits=100)
        await open_peers(app, pilot, "agent-1")
        before = await node.peers()
        screen = app.screen
        assert isinstance(screen, PeersScreen)

        await pilot.press("g", "d", "a", "r", "x")
        screen.action_grant()  # the palette's path, not only the keys
        screen.action_add_peer()
        await pilot.pause()

        assert app.screen is screen
        assert await node.peers() == before
        footer = screen_text(app).splitlines()[-1]
        assert "Grant" not in footer and "Add" not in footer
        assert "read-only" in screen_text(app)
        palette = {command.title for command in app.get_system_commands(screen)}
        assert "Statement" in palette
        for change in ("Grant", "Deduct", "Add peer", "Rotate", "Disable"):
            assert not any(title.startswith(change) for title in palette), change

        await pilot.press("4")
        await until(lambda: app.current_mode == "stress", pilot, what="stress")
        palette = {command.title for command in app.get_system_commands(app.screen)}
        assert "Start a stress run" not in palette


async def test_a_new_peer_secret_is_shown_once_and_works(
    config: Config, logged: Path
) -> None:
    async with console(config) as (app, node, pilot):
        await open_peers(app, pilot, node.console_peer)
        await pilot.press("a")
        assert isinstance(app.screen, NewPeerDialog)
        assert app.focused is not None and app.focused.id == "peer-id"
        await pilot.press(*"agent-9", "enter", *"40", "enter", "enter")
        await until(lambda: isinstance(app.screen, SecretDialog), pilot, what="secret")

        shown = [w for w in SECRET_PATTERN.findall(screen_text(app))]
        assert len(shown) == 1
        secret = shown[0]
        async with httpx.AsyncClient(
            base_url=node.url, auth=MeldAuth("agent-9", secret)
        ) as client:
            credits = (await client.get("/v1/credits")).json()
        assert credits["balance"] == 40

        await pilot.press("y")
        await pilot.pause()
        assert isinstance(app.screen, PeersScreen)
        assert "agent-9" in app.screen.query_one(PeerTable).rows
        assert secret not in screen_text(app)
        assert not SECRET_PATTERN.search(screen_text(app))
        assert secret not in logged.read_text(encoding="utf-8")


async def test_enter_and_escape_typed_ahead_do_not_close_the_secret_dialog(
    config: Config,
) -> None:
    async with console(config) as (app, node, pilot):
        await open_peers(app, pilot, node.console_peer)
        await pilot.press("a", *"agent-9", "enter", "enter", "enter")
        await until(lambda: isinstance(app.screen, SecretDialog), pilot, what="secret")
        (secret,) = SECRET_PATTERN.findall(screen_text(app))

        await pilot.press("enter", "escape", "enter", "space")
        assert isinstance(app.screen, SecretDialog)
        assert secret in screen_text(app)

        await pilot.press("c")
        assert app.clipboard == ""  # sent to the terminal, not kept by the app
        await pilot.press("y")
        await pilot.pause()
        assert isinstance(app.screen, PeersScreen)
        assert secret not in screen_text(app)


async def test_rotate_shows_a_new_secret_that_works(config: Config) -> None:
    async with console(config) as (app, node, pilot):
        _, old = await node.add_peer("agent-1", credits=10)
        await open_peers(app, pilot, "agent-1")
        await pilot.press("r")
        assert isinstance(app.screen, ConfirmDialog)
        await pilot.press("tab", "enter")
        await until(lambda: isinstance(app.screen, SecretDialog), pilot, what="secret")
        (new,) = SECRET_PATTERN.findall(screen_text(app))
        assert "agent-1" in screen_text(app)
        assert new != old
        async with httpx.AsyncClient(
            base_url=node.url, auth=MeldAuth("agent-1", new)
        ) as client:
            assert (await client.get("/v1/credits")).status_code == 200


async def test_disable_refuses_the_peer_after_a_confirmation(config: Config) -> None:
    async with console(config) as (app, node, pilot):
        _, secret = await node.add_peer("agent-1", credits=10)
        await open_peers(app, pilot, "agent-1")
        await pilot.press("x", "enter")  # Enter on the opening focus: Cancel
        assert (await node.ledger.peer("agent-1")).enabled

        await pilot.press("x", "tab", "enter")
        await until(lambda: _disabled(node, "agent-1"), pilot, what="the peer disabled")
        async with httpx.AsyncClient(
            base_url=node.url, auth=MeldAuth("agent-1", secret)
        ) as client:
            assert (await client.get("/v1/credits")).status_code == 401


async def _disabled(node: Node, peer_id: str) -> bool:
    return not (await node.ledger.peer(peer_id)).enabled


async def test_enter_opens_the_statement_of_the_selected_peer(config: Config) -> None:
    async with console(config) as (app, node, pilot):
        await node.add_peer("agent-1", credits=100)
        await node.grant("agent-1", 7, reason="welcome gift", actor="test")
        await open_peers(app, pilot, "agent-1")
        await pilot.press("enter")
        await until(
            lambda: isinstance(app.screen, StatementScreen), pilot, what="statement"
        )
        text = screen_text(app)
        assert "Statement of agent-1" in text
        assert "welcome gift" in text
        await pilot.press("escape")
        assert isinstance(app.screen, PeersScreen)
