"""What the console needs of a node: the public surface of `meld_core.node.Node`."""

from __future__ import annotations

from typing import Protocol

from meld_core.config import Config
from meld_core.types import NodeSnapshot, PeerRecord, Transfer


class NodePort(Protocol):
    """The commands and snapshots the console uses; `Node` satisfies it as it is."""

    @property
    def config(self) -> Config: ...

    @property
    def url(self) -> str: ...

    @property
    def console_peer(self) -> str: ...

    @property
    def console_secret(self) -> str: ...

    async def start(self) -> None: ...

    async def stop(self) -> None: ...

    def snapshot(self) -> NodeSnapshot: ...

    async def peers(self) -> list[PeerRecord]: ...

    async def statement(self, peer_id: str, *, limit: int = 50) -> list[Transfer]: ...

    async def add_peer(
        self, peer_id: str, *, credits: int = 0, actor: str = "console"
    ) -> tuple[PeerRecord, str]: ...

    async def rotate_peer(self, peer_id: str, *, actor: str) -> str: ...

    async def set_peer_enabled(
        self, peer_id: str, enabled: bool, *, actor: str
    ) -> None: ...

    async def grant(
        self, peer_id: str, amount: int, *, reason: str, actor: str
    ) -> Transfer: ...

    async def deduct(
        self, peer_id: str, amount: int, *, reason: str, actor: str
    ) -> Transfer: ...
