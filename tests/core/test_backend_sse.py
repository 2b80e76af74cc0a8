"""Decoding server-sent events the way OpenAI-compatible servers frame them."""

from __future__ import annotations

from collections.abc import AsyncIterator

from meld_core.backends.sse import ServerSentEvent, SSEDecoder, aiter_events


def decode(*chunks: bytes) -> list[ServerSentEvent]:
    decoder = SSEDecoder()
    events = [event for chunk in chunks for event in decoder.feed(chunk)]
    return events + decoder.close()


def test_each_blank_line_ends_one_event() -> None:
    events = decode(b'data: {"a": 1}\n\ndata: [DONE]\n\n')

    assert [e.data for e in events] == ['{"a": 1}', "[DONE]"]


def test_comments_and_extra_blank_lines_yield_no_event() -> None:
    events = decode(b": keep-alive\n\n\n\n: OPENROUTER PROCESSING\n\ndata: x\n\n")

    assert events == [ServerSentEvent("x")]


def test_several_data_lines_join_with_newlines() -> None:
    events = decode(b"data: first\ndata:second\ndata:  third\n\n")

    assert events == [ServerSentEvent("first\nsecond\n third")]


def test_an_event_field_names_the_event_type() -> None:
    events = decode(b'event: error\ndata: {"error": "x"}\n\n')

    assert events == [ServerSentEvent('{"error": "x"}', "error")]


def test_crlf_and_cr_line_ends_work_even_when_split_across_chunks() -> None:
    events = decode(b"data: a\r", b"\n\r", b"\ndata: b\r\rdata: c\n\n")

    assert [e.data for e in events] == ["a", "b", "c"]


def test_a_multibyte_character_split_across_chunks_survives() -> None:
    raw = "data: größer ✓\n\n".encode()

    events = decode(raw[:9], raw[9:15], raw[15:])

    assert events == [ServerSentEvent("größer ✓")]


def test_unicode_line_separators_inside_json_do_not_end_a_line() -> None:
    events = decode('data: {"t": "a\u2028b\x85c"}\n\n'.encode())

    assert events == [ServerSentEvent('{"t": "a\u2028b\x85c"}')]


def test_a_last_event_without_its_blank_line_is_still_delivered() -> None:
    assert decode(b"data: x\n\ndata: [DONE]") == [
        ServerSentEvent("x"),
        ServerSentEvent("[DONE]"),
    ]


def test_a_byte_order_mark_at_the_start_is_ignored() -> None:
    assert decode(b"\xef\xbb\xbfdata: x\n\n") == [ServerSentEvent("x")]


async def test_aiter_events_reads_an_async_byte_stream() -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for piece in (b"data: o", b"ne\n\n: ping\n\n", b"data: two\n\n"):
            yield piece

    events = [event.data async for event in aiter_events(chunks())]

    assert events == ["one", "two"]
