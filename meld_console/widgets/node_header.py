"""The one-line header: who the node is and how it is doing right now."""

from __future__ import annotations

from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.app import RenderResult
from textual.widget import Widget

from meld_core.types import NodeSnapshot

from .. import format as fmt


class NodeHeader(Widget):
    """Node id, queued, in flight, success rate, requests/s, uptime, listen address."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "node-header--id",
        "node-header--label",
        "node-header--value",
        "node-header--warn",
        "node-header--bad",
    }

    DEFAULT_CSS = """
    NodeHeader {
        height: 1;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
        background: $panel;
        color: $foreground;
    }
    NodeHeader > .node-header--id { text-style: bold; color: $accent; }
    NodeHeader > .node-header--label { color: $foreground-muted; }
    NodeHeader > .node-header--value { text-style: bold; }
    NodeHeader > .node-header--warn { color: $warning; text-style: bold; }
    NodeHeader > .node-header--bad { color: $error; text-style: bold; }
    """

    def __init__(
        self,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._texts: tuple[Text, ...] = (Text("starting the node…"),)
        """The line in forms from longest to shortest; the first that fits is shown."""

    def show(self, snapshot: NodeSnapshot) -> None:
        """Render a snapshot; redraw only when the visible text changed."""
        texts = self._build(snapshot)
        if texts != self._texts:
            self._texts = texts
            self.refresh()

    def show_message(self, message: str) -> None:
        """Replace the line with a status message, such as a stop in progress."""
        text = Text(message, style=self.get_component_rich_style("node-header--warn"))
        if (text,) != self._texts:
            self._texts = (text,)
            self.refresh()

    def render(self) -> RenderResult:
        width = self.content_size.width
        for text in self._texts:
            if text.cell_len <= width:
                return text
        return self._texts[-1]

    def _build(self, snapshot: NodeSnapshot) -> tuple[Text, ...]:
        style = self.get_component_rich_style
        label, value = style("node-header--label"), style("node-header--value")
        success = snapshot.success_rate
        success_style = value
        if success is not None and success < 0.99:
            success_style = style(
                "node-header--bad" if success < 0.9 else "node-header--warn"
            )
        queued_style = style("node-header--warn") if snapshot.queued else value
        # The numbers an operator watches come first; the listen address, which
        # never changes, goes last and shrinks to its port, then away, when the
        # line would not fit: a header that wraps shows nothing after the fold.
        numbers: list[tuple[str, Style]] = [
            (snapshot.node_id, style("node-header--id")),
            ("  queued ", label),
            (str(snapshot.queued), queued_style),
            ("  in flight ", label),
            (str(snapshot.in_flight), value),
            ("  ok ", label),
            (fmt.percent(success), success_style),
            ("  ", label),
            (fmt.rate(snapshot.requests_per_s), value),
            (" req/s  up ", label),
            (fmt.duration(snapshot.uptime_s), value),
        ]
        port = snapshot.listen.rpartition(":")[2]
        return (
            Text.assemble(*numbers, (f"  {snapshot.listen}", label)),
            Text.assemble(*numbers, (f"  :{port}", label)),
            Text.assemble(*numbers),
        )
