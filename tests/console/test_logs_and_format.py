"""The log tail's reader and the console's number formatting."""

from __future__ import annotations

from pathlib import Path

from meld_console import format as fmt
from meld_console.logs import LogReader, parse_line


def test_the_reader_returns_only_whole_new_lines(tmp_path: Path) -> None:
    path = tmp_path / "node.log"
    path.write_text("2026-01-01 10:00:00,000 INFO    a: one\n", encoding="utf-8")
    reader = LogReader(path)
    assert [line.text for line in reader.read_new()] == [
        "2026-01-01 10:00:00,000 INFO    a: one"
    ]
    with path.open("a", encoding="utf-8") as handle:
        handle.write("2026-01-01 10:00:01,000 ERROR   a: two\npartial")
    lines = reader.read_new()
    assert [(line.level, line.text[-3:]) for line in lines] == [("ERROR", "two")]
    assert reader.read_new() == []
    with path.open("a", encoding="utf-8") as handle:
        handle.write(" line\n")
    assert [line.text for line in reader.read_new()] == ["partial line"]


def test_the_reader_starts_over_after_the_file_rotates(tmp_path: Path) -> None:
    path = tmp_path / "node.log"
    path.write_text("x INFO a\n" * 50, encoding="utf-8")
    reader = LogReader(path)
    assert len(reader.read_new()) == 50
    path.write_text("2026-01-01 10:00:00,000 WARNING b: fresh\n", encoding="utf-8")
    assert [line.level for line in reader.read_new()] == ["WARNING"]


def test_the_first_read_takes_a_backlog_of_whole_lines(tmp_path: Path) -> None:
    path = tmp_path / "node.log"
    path.write_text("".join(f"line {i:04d}\n" for i in range(1000)), encoding="utf-8")
    lines = LogReader(path, backlog_bytes=100).read_new()
    assert lines[-1].text == "line 0999"
    assert all(len(line.text) == len("line 0999") for line in lines)


def test_a_traceback_line_keeps_the_level_of_its_record() -> None:
    head = parse_line("2026-01-01 10:00:00,000 ERROR   meld_core.router: boom")
    tail = parse_line('  File "x.py", line 1', head.level)
    assert (head.level, tail.level) == ("ERROR", "ERROR")


def test_a_missing_log_file_reads_as_empty(tmp_path: Path) -> None:
    assert LogReader(tmp_path / "none.log").read_new() == []


def test_bars_fill_by_eighths_and_keep_their_width() -> None:
    assert fmt.bar(0, 4, 10) == ("", "░" * 10)
    assert fmt.bar(4, 4, 10) == ("█" * 10, "")
    filled, empty = fmt.bar(1, 8, 4)  # half a cell
    assert filled == "▌" and len(filled + empty) == 4
    assert fmt.bar(9, 0, 5) == ("", "░" * 5)


def test_sparklines_scale_to_their_top_and_keep_their_width() -> None:
    assert fmt.spark([0, 1, 2, 4, 8], 5) == " ▁▂▄█"
    assert fmt.spark([8, 8], 5, top=16) == "   ▄▄"
    assert len(fmt.spark(list(range(100)), 12)) == 12


def test_durations_and_latencies_read_compactly() -> None:
    assert [fmt.duration(s) for s in (5, 65, 3700, 90000)] == [
        "5s",
        "1m05s",
        "1h01m",
        "1d01h",
    ]
    assert [fmt.millis(v) for v in (None, 840, 2410)] == ["\u2013", "840ms", "2.41s"]
    assert fmt.credits(10_000_000) == "10 000 000"


def test_middle_keeps_both_ends_of_a_long_id() -> None:
    long_id = "agent-" + "x" * 50 + "-prod-2"
    cut = fmt.middle(long_id, 20)
    assert len(cut) == 20
    assert cut.startswith("agent-") and cut.endswith("prod-2") and "…" in cut
    assert fmt.middle("agent-7", 20) == "agent-7"


def test_fold_puts_the_whole_history_into_the_cells_newest_last() -> None:
    history = [5000.0] + [100.0] * 149  # a spike five minutes ago
    cells = fmt.fold(history, 14, max)
    assert len(cells) == 14
    assert cells[0] == 5000.0 and cells[1:] == [100.0] * 13
    assert fmt.fold([1.0, 2.0, 3.0, 4.0], 2, fmt.mean) == [1.5, 3.5]
    assert fmt.fold([1.0, 2.0, 3.0], 2, fmt.mean) == [1.0, 2.5]
    assert fmt.span(150 * 2.0) == "5m"


def test_the_reader_skips_to_the_last_backlog_after_a_long_absence(
    tmp_path: Path,
) -> None:
    path = tmp_path / "node.log"
    line = "2026-01-01 10:00:00,000 INFO    a: " + "x" * 64 + "\n"
    path.write_text(line * 10, encoding="utf-8")
    reader = LogReader(path, backlog_bytes=1000)
    reader.read_new()
    with path.open("a", encoding="utf-8") as handle:
        handle.write(line * 10_000)  # about 1 MB while the screen was hidden

    lines = reader.read_new()

    assert lines[0].level == "WARNING" and "skipped" in lines[0].text
    assert 1 < len(lines) <= 1000 // len(line) + 2
    assert all(text.text == line.rstrip("\n") for text in lines[1:])
    assert reader.read_new() == []


def test_a_log_line_is_shown_with_its_time_level_and_last_logger_name() -> None:
    line = parse_line(
        "2026-05-28 20:26:40,003 WARNING meld_core.node: backend deepseek is down"
    )
    assert line.short == "20:26:40 WARNING node: backend deepseek is down"
    traceback = parse_line('  File "x.py", line 3, in f', "ERROR")
    assert traceback.short == '  File "x.py", line 3, in f'


def test_seen_changes_at_most_every_ten_seconds() -> None:
    now = 1000.0
    ages = [0, 9, 10, 19, 59, 60, 119, 3599, 3600, 86400 * 3]
    shown = [fmt.seen(now - age, now) for age in ages]
    assert shown == ["now", "now", "10s", "10s", "50s", "1m", "1m", "59m", "1h", "3d"]
    assert fmt.seen(None, now) == "never"
