"""Peers and credits: the peer table, and every action that changes money or peers."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.message import Message
from textual.widgets import Input, Label

from meld_core.errors import MeldError
from meld_core.types import NodeSnapshot, PeerRecord, Transfer

from .. import format as fmt
from ..widgets import PeerTable
from .base import LiveScreen
from .confirm_dialog import ConfirmDialog
from .credit_dialog import CreditDialog, CreditOrder
from .new_peer_dialog import NewPeer, NewPeerDialog
from .secret_dialog import SecretDialog
from .statement import StatementScreen

log = logging.getLogger(__name__)

# Actions that change money or peers; a read-only console refuses all of them.
CHANGES = frozenset({"grant", "deduct", "add_peer", "rotate", "toggle_enabled"})
# A statement reads ten times the rows it shows, so its grants-and-deducts view
# finds some behind a busy peer's holds, settles and releases.
STATEMENT_READ = 500


class PeersScreen(LiveScreen):
    """The peer table with grant, deduct, add, rotate, disable and statement."""

    MODE = "peers"

    # Nine keys do not fit one footer line at 80 columns: pairs share a label, and
    # the palette's key, listed in the help, gives up its place.
    FOOTER_PALETTE = False
    _CREDITS = Binding.Group("Credits", compact=True)
    _SORT = Binding.Group("Sort", compact=True)
    BINDINGS = [
        Binding("g", "grant", "Grant", group=_CREDITS),
        Binding("d", "deduct", "Deduct", group=_CREDITS),
        Binding("a", "add_peer", "Add"),
        Binding("r", "rotate", "Rotate"),
        Binding("x", "toggle_enabled", "On/off"),
        # Priority, or the table's own Enter takes the key and hides it in the
        # footer; Enter in the filter box still submits the filter.
        Binding("enter", "statement", "Statement", priority=True),
        Binding("slash", "filter", "Filter"),
        Binding("s", "next_sort", "Sort", group=_SORT),
        Binding("S", "reverse_sort", "Reverse sort", group=_SORT),
        Binding("escape", "clear_filter", "Clear filter", show=False),
    ]

    class PeersLoaded(Message):
        """The ledger answered with the current peer records."""

        def __init__(self, peers: list[PeerRecord]) -> None:
            super().__init__()
            self.peers = peers

    class CreditsChanged(Message):
        """A grant or deduct was written to the ledger."""

        def __init__(self, order: CreditOrder, transfer: Transfer) -> None:
            super().__init__()
            self.order = order
            self.transfer = transfer

    class SecretIssued(Message):
        """A peer was added or rotated and has a secret to show, once."""

        def __init__(self, peer_id: str, secret: str, *, what: str) -> None:
            super().__init__()
            self.peer_id = peer_id
            self.secret = secret
            self.what = what

    class PeerChanged(Message):
        """A peer was enabled or disabled."""

        def __init__(self, note: str) -> None:
            super().__init__()
            self.note = note

    class StatementLoaded(Message):
        """The ledger answered with a peer's latest transfers."""

        def __init__(self, peer_id: str, transfers: list[Transfer]) -> None:
            super().__init__()
            self.peer_id = peer_id
            self.transfers = transfers

    class ActionFailed(Message):
        """A ledger command was refused or failed; `note` says why."""

        def __init__(self, note: str) -> None:
            super().__init__()
            self.note = note

    def __init__(self) -> None:
        super().__init__()
        self._loading = False
        self._load_problem: str | None = None

    def compose_body(self) -> ComposeResult:
        yield Label("", id="peers-title", classes="section-title")
        yield PeerTable(id="peers")
        yield Input(placeholder="filter peers by id", id="peer-filter")

    def on_mount(self) -> None:
        self.query_one("#peer-filter", Input).display = False
        self._show_title()

    @property
    def table(self) -> PeerTable:
        """The peer table of this screen."""
        return self.query_one(PeerTable)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if action == "statement" and isinstance(self.focused, Input):
            return False  # Enter belongs to the filter box while it is typed in
        # Hidden from the footer and the palette, and the key does nothing.
        return not (action in CHANGES and self.console.read_only)

    def show_snapshot(self, snapshot: NodeSnapshot) -> None:
        self.reload()

    def reload(self) -> None:
        """Ask the ledger for the peers, unless a request is already out."""
        if not self._loading:
            self._loading = True
            self._load_peers()

    @work(group="peers-load")
    async def _load_peers(self) -> None:
        try:
            peers = await self.console.node.peers()
        except Exception as exc:
            # A broken ledger fails on every tick: say so once, not every second.
            if self._load_problem is None:
                self._load_problem = _failure(exc, "cannot list peers", "list peers")
                self.post_message(self.ActionFailed(self._load_problem))
            return
        finally:
            self._loading = False
        self._load_problem = None
        self.post_message(self.PeersLoaded(peers))

    def on_peers_screen_peers_loaded(self, message: PeersLoaded) -> None:
        self.table.show(message.peers, now=self.console.clock())
        self._show_title()

    def _show_title(self) -> None:
        table = self.table
        shown = len(table.visible_peers)
        text = f"Peers  {shown} shown  sorted by {table.sort_label}"
        if table.filter_text:
            text += f"  filter “{table.filter_text}”"
        self.query_one("#peers-title", Label).update(text)

    # -- actions that change money or peers -------------------------------------

    def _refused(self, action: str) -> bool:
        if self.console.read_only:
            self.notify("Read-only console: this changes nothing.", severity="warning")
            return True
        return False

    def _selected(self) -> PeerRecord | None:
        peer = self.table.selected_peer
        if peer is None:
            self.notify("No peer selected.", severity="warning")
        return peer

    def action_grant(self) -> None:
        self._open_credit_dialog("grant")

    def action_deduct(self) -> None:
        self._open_credit_dialog("deduct")

    def _open_credit_dialog(self, kind: str) -> None:
        if self._refused(kind) or (peer := self._selected()) is None:
            return
        dialog = CreditDialog(peer.id, kind=kind, read_peer=self._read_peer)
        self.app.push_screen(dialog, self._apply_credit)

    async def _read_peer(self, peer_id: str) -> PeerRecord | None:
        # Node's public surface has no one-peer read; one listing per dialog opened
        # is cheap next to the refresh, which lists every peer each second.
        peers = await self.console.node.peers()
        return next((peer for peer in peers if peer.id == peer_id), None)

    def _apply_credit(self, order: CreditOrder | None) -> None:
        if order is not None:
            self._write_credit(order)

    @work(group="ledger")
    async def _write_credit(self, order: CreditOrder) -> None:
        node = self.console.node
        command = node.grant if order.kind == "grant" else node.deduct
        try:
            transfer = await command(
                order.peer_id,
                order.amount,
                reason=order.reason,
                actor=self.console.actor,
            )
        except Exception as exc:
            note = _failure(exc, f"{order.kind} refused", order.kind)
            self.post_message(self.ActionFailed(note))
            return
        self.post_message(self.CreditsChanged(order, transfer))

    def on_peers_screen_credits_changed(self, message: CreditsChanged) -> None:
        order = message.order
        verb = "Granted" if order.kind == "grant" else "Deducted"
        preposition = "to" if order.kind == "grant" else "from"
        self.notify(
            f"{verb} {fmt.credits(order.amount)} {preposition} {order.peer_id}."
        )
        self.reload()

    def action_add_peer(self) -> None:
        if self._refused("add_peer"):
            return
        # Every peer, not only those the filter shows: the ledger refuses a
        # duplicate anyway, but the dialog should say so before Add.
        taken = frozenset(p.id for p in self.table.peers)
        self.app.push_screen(NewPeerDialog(taken=taken), self._apply_new_peer)

    def _apply_new_peer(self, new_peer: NewPeer | None) -> None:
        if new_peer is not None:
            self._add_peer(new_peer)

    @work(group="ledger")
    async def _add_peer(self, new_peer: NewPeer) -> None:
        try:
            _, secret = await self.console.node.add_peer(
                new_peer.peer_id, credits=new_peer.credits, actor=self.console.actor
            )
        except Exception as exc:
            self.post_message(
                self.ActionFailed(_failure(exc, "add refused", "add peer"))
            )
            return
        self.post_message(self.SecretIssued(new_peer.peer_id, secret, what="new"))

    def action_rotate(self) -> None:
        if self._refused("rotate") or (peer := self._selected()) is None:
            return
        question = (
            f"Rotate the secret of {peer.id}? Its old secret keeps working "
            "for an hour, then stops."
        )
        self._confirm(question, "Rotate", lambda: self._rotate(peer.id))

    @work(group="ledger")
    async def _rotate(self, peer_id: str) -> None:
        try:
            secret = await self.console.node.rotate_peer(
                peer_id, actor=self.console.actor
            )
        except Exception as exc:
            self.post_message(
                self.ActionFailed(_failure(exc, "rotate refused", "rotate"))
            )
            return
        self.post_message(self.SecretIssued(peer_id, secret, what="rotated"))

    def on_peers_screen_secret_issued(self, message: SecretIssued) -> None:
        self.app.push_screen(
            SecretDialog(message.peer_id, message.secret, what=message.what)
        )
        self.reload()

    def action_toggle_enabled(self) -> None:
        if self._refused("toggle_enabled") or (peer := self._selected()) is None:
            return
        verb = "Disable" if peer.enabled else "Enable"
        question = f"{verb} {peer.id}?"
        if peer.enabled:
            question += " Its requests are refused until it is enabled again."
        self._confirm(
            question, verb, lambda: self._set_enabled(peer.id, not peer.enabled)
        )

    @work(group="ledger")
    async def _set_enabled(self, peer_id: str, enabled: bool) -> None:
        try:
            await self.console.node.set_peer_enabled(
                peer_id, enabled, actor=self.console.actor
            )
        except Exception as exc:
            self.post_message(
                self.ActionFailed(_failure(exc, "refused", "enable or disable"))
            )
            return
        state = "enabled" if enabled else "disabled"
        self.post_message(self.PeerChanged(f"{peer_id} is {state}."))

    def on_peers_screen_peer_changed(self, message: PeerChanged) -> None:
        self.notify(message.note)
        self.reload()

    def on_peers_screen_action_failed(self, message: ActionFailed) -> None:
        self.notify(message.note, severity="error")

    def _confirm(self, question: str, verb: str, then: Callable[[], Any]) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                then()

        self.app.push_screen(ConfirmDialog(question, confirm=verb), answered)

    # -- reading ----------------------------------------------------------------

    def action_statement(self) -> None:
        if (peer := self._selected()) is not None:
            self._load_statement(peer.id)

    @work(group="ledger")
    async def _load_statement(self, peer_id: str) -> None:
        try:
            transfers = await self.console.node.statement(peer_id, limit=STATEMENT_READ)
        except Exception as exc:
            self.post_message(
                self.ActionFailed(_failure(exc, "no statement", "statement"))
            )
            return
        self.post_message(self.StatementLoaded(peer_id, transfers))

    def on_peers_screen_statement_loaded(self, message: StatementLoaded) -> None:
        self.app.push_screen(
            StatementScreen(
                message.peer_id, message.transfers, now=self.console.clock()
            )
        )

    def action_filter(self) -> None:
        box = self.query_one("#peer-filter", Input)
        box.display = True
        box.focus()

    def action_clear_filter(self) -> None:
        box = self.query_one("#peer-filter", Input)
        box.value = ""
        box.display = False
        self.table.set_filter("")
        self.table.focus()
        self._show_title()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "peer-filter":
            self.table.set_filter(event.value.strip())
            self._show_title()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "peer-filter":
            event.input.display = event.value != ""
            self.table.focus()

    def action_next_sort(self) -> None:
        self.table.cycle_sort()
        self._show_title()

    def action_reverse_sort(self) -> None:
        self.table.reverse_sort()
        self._show_title()

    def on_data_table_row_selected(self, event: PeerTable.RowSelected) -> None:
        event.stop()
        self.action_statement()


def _failure(exc: Exception, refused: str, what: str | None = None) -> str:
    """What to tell the operator about a failed ledger call; logs the unexpected.

    Args:
        refused: how a refusal by the node reads, such as `grant refused`.
        what: the action's name for a failure that is not a refusal.
    """
    if isinstance(exc, MeldError):
        return f"{refused}: {exc.message}"
    # Not the node refusing but something breaking (a disk, a bug): the traceback
    # goes to the log file, and the console keeps running so the operator can act.
    what = what or refused
    log.error("%s failed", what, exc_info=exc)
    return f"{what} failed: {type(exc).__name__}: {exc} (traceback in the log)"
