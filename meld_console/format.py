"""Plain-text formatting of durations, rates, bars and sparklines for the console."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

SPARK_GLYPHS = "▁▂▃▄▅▆▇█"
BAR_FULL = "█"
BAR_EMPTY = "░"
BAR_PARTS = " ▏▎▍▌▋▊▉"
UNKNOWN = "\u2013"  # an en dash: the value is not known yet


def duration(seconds: float) -> str:
    """A compact span such as `42s`, `12m05s`, `3h07m` or `2d04h`."""
    whole = max(0, int(seconds))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600:02d}h"


def millis(value: float | None) -> str:
    """A latency in ms or s, such as `840ms` or `2.41s`; a dash when unknown."""
    if value is None:
        return UNKNOWN
    if value < 1000:
        return f"{value:.0f}ms"
    if value < 100_000:
        return f"{value / 1000:.2f}s"
    return f"{value / 1000:.0f}s"


def seconds(value: float) -> str:
    """A wait such as `0s`, `3.2s` or `4m10s`."""
    if value <= 0:
        return "0s"
    if value < 60:
        return f"{value:.1f}s"
    return duration(value)


def percent(ratio: float | None) -> str:
    """A ratio as a percentage with one decimal; a dash when unknown."""
    return UNKNOWN if ratio is None else f"{ratio * 100:.1f}%"


def rate(value: float) -> str:
    """A per-second rate with a precision that suits its size."""
    return f"{value:.1f}" if value < 100 else f"{value:.0f}"


def credits(amount: int) -> str:
    """Credit units with thin grouping, such as `12 400`."""
    return f"{amount:,}".replace(",", " ")


def middle(text: str, width: int) -> str:
    """`text` cut to `width` cells by an ellipsis in its middle, keeping both ends.

    An id's end tells peers apart as often as its start (`agent-prod-1`,
    `agent-prod-2`), so neither end is the one to lose.
    """
    if len(text) <= width:
        return text
    if width <= 1:
        return "…"[:width]
    head = width // 2
    tail = width - 1 - head
    return text[:head] + "…" + (text[-tail:] if tail else "")


def clock_time(at: float) -> str:
    """The local wall-clock time of a timestamp, `HH:MM:SS`."""
    return time.strftime("%H:%M:%S", time.localtime(at))


def stamp(at: float, now: float) -> str:
    """A timestamp as `HH:MM:SS` within the last day, else as `MM-DD HH:MM`."""
    if now - at < 86400:
        return clock_time(at)
    return time.strftime("%m-%d %H:%M", time.localtime(at))


def seen(at: float | None, now: float) -> str:
    """How long ago a peer was seen, in steps that change at most every 10 s.

    A table of peers redraws a cell whenever its text changes; to-the-second
    ages would change every row on every refresh.
    """
    if at is None:
        return "never"
    age = max(0, int(now - at))
    if age < 10:
        return "now"
    if age < 60:
        return f"{age // 10 * 10}s"
    if age < 3600:
        return f"{age // 60}m"
    if age < 86400:
        return f"{age // 3600}h"
    return f"{age // 86400}d"


def ago(at: float | None, now: float) -> str:
    """How long ago a timestamp was, such as `4s ago`; `never` when unknown."""
    if at is None:
        return "never"
    return f"{duration(now - at)} ago"


def bar(used: float, total: float, width: int) -> tuple[str, str]:
    """A horizontal bar as its filled and empty parts, with eighth-cell precision."""
    if width <= 0:
        return "", ""
    fraction = 0.0 if total <= 0 else min(1.0, max(0.0, used / total))
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    filled = BAR_FULL * full + (BAR_PARTS[part] if part else "")
    return filled, BAR_EMPTY * (width - len(filled))


def fold(
    values: Sequence[float], width: int, combine: Callable[[Sequence[float]], float]
) -> list[float]:
    """`values` in at most `width` cells, each `combine`d from equal runs of them.

    Runs are counted from the newest value, so the last cell is always whole and
    only the oldest may be short.
    """
    if width <= 0 or not values:
        return []
    run = math.ceil(len(values) / width)
    cells = [
        combine(values[max(0, end - run) : end]) for end in range(len(values), 0, -run)
    ]
    return cells[::-1]


def mean(values: Sequence[float]) -> float:
    """The arithmetic mean; 0 for no values."""
    return sum(values) / len(values) if values else 0.0


def span(seconds: float) -> str:
    """A span of history such as `5m` or `90s`, as short as it reads."""
    whole = int(seconds)
    if whole >= 60 and whole % 60 == 0:
        return f"{whole // 60}m"
    return duration(whole)


def spark(values: Sequence[float], width: int, *, top: float | None = None) -> str:
    """The last `width` values as a sparkline scaled to `top` (default: their max)."""
    tail = list(values)[-width:] if width > 0 else []
    peak = top if top is not None else max(tail, default=0.0)
    glyphs = []
    for value in tail:
        if peak <= 0 or value <= 0:
            glyphs.append(" " if value <= 0 else SPARK_GLYPHS[0])
            continue
        index = max(0, math.ceil(min(1.0, value / peak) * len(SPARK_GLYPHS)) - 1)
        glyphs.append(SPARK_GLYPHS[index])
    return "".join(glyphs).rjust(width)
