"""Placeholder for the stress-fire panel, which has its own issue."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.widgets import Static

from .base import LiveScreen

NOT_YET = """\
Stress runs from the console are not built yet.

Until then, fire one from another shell; the Dashboard shows its load live
while it runs:

    meld-console stress --target self --model sim-small --levels 1,5,10,20
"""


class StressScreen(LiveScreen):
    """Says honestly that the stress panel does not exist yet, and what to use."""

    MODE = "stress"

    def compose_body(self) -> ComposeResult:
        yield Static(NOT_YET, id="not-yet", classes="hint")
