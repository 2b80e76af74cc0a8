"""The console's screens and dialogs."""

from .base import TABS, LiveScreen
from .confirm_dialog import ConfirmDialog
from .credit_dialog import CreditDialog, CreditOrder
from .dashboard import DashboardScreen
from .help import HelpScreen
from .log import LogScreen
from .network import NetworkScreen
from .new_peer_dialog import NewPeer, NewPeerDialog
from .peers import PeersScreen
from .secret_dialog import SecretDialog
from .statement import StatementScreen
from .stress import StressScreen

__all__ = [
    "TABS",
    "ConfirmDialog",
    "CreditDialog",
    "CreditOrder",
    "DashboardScreen",
    "HelpScreen",
    "LiveScreen",
    "LogScreen",
    "NetworkScreen",
    "NewPeer",
    "NewPeerDialog",
    "PeersScreen",
    "SecretDialog",
    "StatementScreen",
    "StressScreen",
]
