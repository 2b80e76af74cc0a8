"""Three lines for one backend: its state, its slots and queue, and its history."""

from __future__ import annotations

from typing import ClassVar

from rich.style import Style
from rich.text import Text
from textual.app import RenderResult
from textual.widget import Widget

from meld_core.stats import BUCKET_S, HISTORY_BUCKETS
from meld_core.types import BackendSnapshot

from .. import format as fmt

# Widths of the numbers beside each sparkline: " 3.41s max 9.99s", " 4.2/s max 12.0/s".
LAT_TAIL = 18
THR_TAIL = 18


class BackendCard(Widget):
    """Kind, models, slots, queue, ETA, latency, success and two labelled sparklines."""

    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "backend-card--name",
        "backend-card--label",
        "backend-card--value",
        "backend-card--ok",
        "backend-card--warn",
        "backend-card--bad",
        "backend-card--bar",
        "backend-card--empty",
        "backend-card--spark",
    }

    DEFAULT_CSS = """
    BackendCard {
        height: 3;
        padding: 0 1;
        text-wrap: nowrap;
        text-overflow: ellipsis;
    }
    BackendCard > .backend-card--name { color: $accent; text-style: bold; }
    BackendCard > .backend-card--label { color: $foreground-muted; }
    BackendCard > .backend-card--value { text-style: bold; }
    BackendCard > .backend-card--ok { color: $success; }
    BackendCard > .backend-card--warn { color: $warning; text-style: bold; }
    BackendCard > .backend-card--bad { color: $error; text-style: bold; }
    BackendCard > .backend-card--bar { color: $primary; }
    BackendCard > .backend-card--empty { color: $foreground 25%; }
    BackendCard > .backend-card--spark { color: $secondary; background: $boost; }
    """

    def __init__(
        self,
        backend: BackendSnapshot,
        *,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        super().__init__(name=name, id=id, classes=classes)
        self._backend = backend
        self._text: Text | None = None
        self._width = -1

    @property
    def backend(self) -> BackendSnapshot:
        """The snapshot on screen."""
        return self._backend

    def show(self, backend: BackendSnapshot) -> None:
        """Render a new snapshot of the backend; redraw only if the text changed."""
        self._backend = backend
        text = self._build(backend, self.size.width)
        if text != self._text:
            self._text = text
            self.refresh()

    def render(self) -> RenderResult:
        if self._text is None or self._width != self.size.width:
            self._text = self._build(self._backend, self.size.width)
        return self._text

    def _build(self, backend: BackendSnapshot, width: int) -> Text:
        self._width = width
        lines = [
            self._title_line(backend, width),
            self._load_line(backend, width),
            self._history_line(backend, width),
        ]
        text = Text("\n", no_wrap=True, overflow="ellipsis").join(lines)
        text.no_wrap = True
        return text

    def _style(self, name: str) -> Style:
        return self.get_component_rich_style(f"backend-card--{name}")

    def _title_line(self, backend: BackendSnapshot, width: int) -> Text:
        label, value = self._style("label"), self._style("value")
        health = (
            ("● up", self._style("ok"))
            if backend.healthy
            else ("● down", self._style("bad"))
        )
        line = Text.assemble(
            (backend.name, self._style("name")),
            (f"  {backend.kind}  ", label),
            (", ".join(backend.models), value),
        )
        right = Text.assemble(
            health,
            ("  ok ", label),
            (fmt.percent(backend.success_rate), self._rate_style(backend.success_rate)),
            ("  done ", label),
            (str(backend.completed), value),
            ("  failed ", label),
            (str(backend.failed), self._style("bad") if backend.failed else value),
        )
        return _spread(line, right, width)

    def _load_line(self, backend: BackendSnapshot, width: int) -> Text:
        label, value = self._style("label"), self._style("value")
        unlimited = backend.max_concurrency == 0
        slots_total = "∞" if unlimited else str(backend.slots)
        slots_num = f" {backend.in_flight}/{slots_total}"
        queue_num = f" {backend.queued}/{backend.max_queue}"
        tail = Text.assemble(
            ("  eta ", label),
            (
                fmt.seconds(backend.eta_s),
                self._style("warn") if backend.eta_s > 5 else value,
            ),
            ("  p50 ", label),
            (fmt.millis(backend.p50_ms), value),
        )
        p95 = Text.assemble(("  p95 ", label), (fmt.millis(backend.p95_ms), value))
        fixed = len("slots ") + len(slots_num) + len("  queue ") + len(queue_num)
        # p95 is the first to go on a narrow terminal: the line must not wrap,
        # or the card's third line, the sparklines, falls out of view.
        if width - fixed - tail.cell_len - p95.cell_len >= 2 * 3:
            tail.append_text(p95)
        bar_width = max(3, min(20, (width - fixed - tail.cell_len) // 2))
        queue_fraction = backend.queued / backend.max_queue if backend.max_queue else 0
        queue_style = self._style("bar")
        if queue_fraction >= 0.5:
            queue_style = self._style("bad" if queue_fraction >= 0.9 else "warn")
        line = Text("slots ", label)
        line.append_text(
            self._bar(backend.in_flight, backend.slots, bar_width, self._style("bar"))
        )
        line.append(slots_num, value)
        line.append("  queue ", label)
        line.append_text(
            self._bar(backend.queued, backend.max_queue, bar_width, queue_style)
        )
        line.append(queue_num, self._style("warn") if backend.queued else value)
        line.append_text(tail)
        return line

    def _history_line(self, backend: BackendSnapshot, width: int) -> Text:
        label, value = self._style("label"), self._style("value")
        # Numbers get fixed widths so the sparklines do not shift as they change.
        # A backend with no history yet will fill the same span as the others.
        history = max(len(backend.latency_history), len(backend.throughput_history))
        history = history or HISTORY_BUCKETS
        shown = fmt.span(history * BUCKET_S) + " "
        fixed = len(shown) + len("lat ") + LAT_TAIL + len("  thr ") + THR_TAIL
        spark_width = max(4, (width - fixed) // 2)
        # The whole history folded into the cells there are: a cell shows the
        # worst latency of its buckets and their mean throughput, so a spike
        # minutes ago still shows and the rate stays a rate.
        latency = fmt.fold(backend.latency_history, spark_width, max)
        throughput = fmt.fold(backend.throughput_history, spark_width, fmt.mean)
        # A bucket without completions has no latency: show the last that had one.
        measured = [ms for ms in backend.latency_history if ms > 0]
        lat_now = fmt.millis(measured[-1]) if measured else fmt.UNKNOWN
        lat_top = max(latency, default=0.0)
        lat_max = fmt.millis(lat_top) if measured else fmt.UNKNOWN
        # The newest bucket is still filling: its rate would read low.
        recent = backend.throughput_history[-2:-1]
        thr_now = f"{fmt.rate(recent[0])}/s" if recent else fmt.UNKNOWN
        thr_top = max(throughput, default=0.0)
        spark = self._style("spark")
        line = Text(shown, label)
        line.append("lat ", label)
        line.append(fmt.spark(latency, spark_width, top=lat_top), spark)
        line.append(f" {lat_now:>6} max {lat_max:<6}"[:LAT_TAIL], value)
        line.append("  thr ", label)
        line.append(fmt.spark(throughput, spark_width, top=thr_top), spark)
        thr_max = f"{fmt.rate(thr_top)}/s"
        line.append(f" {thr_now:>6} max {thr_max:<6}"[:THR_TAIL], value)
        return line

    def _bar(self, used: float, total: float, width: int, style: Style) -> Text:
        filled, empty = fmt.bar(used, total, width)
        return Text.assemble((filled, style), (empty, self._style("empty")))

    def _rate_style(self, rate: float | None) -> Style:
        if rate is None or rate >= 0.99:
            return self._style("value")
        return self._style("warn" if rate >= 0.9 else "bad")


def _spread(left: Text, right: Text, width: int) -> Text:
    """`left` and `right` on one line, pushed apart to fill `width`."""
    gap = width - left.cell_len - right.cell_len
    if gap < 2:
        left.truncate(max(1, width - right.cell_len - 2), overflow="ellipsis")
        gap = 2
    return Text.assemble(left, " " * gap, right)
