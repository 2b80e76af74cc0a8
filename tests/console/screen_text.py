"""The text of the screen in view, for assertions on what an operator would read."""

from __future__ import annotations

import io

from rich.console import Console
from textual.app import App


def screen_text(app: App[object]) -> str:
    """Every character on screen, top to bottom, without styles."""
    width, height = app.size
    console = Console(
        width=width,
        height=height,
        file=io.StringIO(),
        force_terminal=True,
        color_system="truecolor",
        record=True,
        legacy_windows=False,
    )
    render = app.screen._compositor.render_update(
        full=True, screen_stack=app._background_screens
    )
    console.print(render)
    return console.export_text(styles=False)
