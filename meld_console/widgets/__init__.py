"""Widgets of the console; each renders only the snapshot it is given."""

from .backend_card import BackendCard
from .log_tail import LogTail
from .node_header import NodeHeader
from .peer_table import PeerTable
from .remote_table import RemoteTable
from .request_table import RequestTable
from .screen_tabs import ScreenTabs

__all__ = [
    "BackendCard",
    "LogTail",
    "NodeHeader",
    "PeerTable",
    "RemoteTable",
    "RequestTable",
    "ScreenTabs",
]
