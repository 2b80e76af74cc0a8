"""Server-sent events decoding, as the WHATWG HTML standard defines the format."""

from __future__ import annotations

import codecs
import re
from collections.abc import AsyncIterable, AsyncIterator
from dataclasses import dataclass

# Only CR, LF and CRLF end a line; str.splitlines would also split on U+2028 and
# friends, which JSON carries unescaped inside strings.
_LINE_END = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True, slots=True)
class ServerSentEvent:
    """One dispatched event: its type and its data lines joined by newlines."""

    data: str
    event: str = "message"


class SSEDecoder:
    """Turns bytes into events; comments and keep-alive blank lines yield nothing."""

    def __init__(self) -> None:
        self._text = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._tail = ""
        self._after_cr = False
        self._started = False
        self._data: list[str] = []
        self._event = ""

    def feed(self, chunk: bytes) -> list[ServerSentEvent]:
        """The events completed by `chunk`."""
        return self._lines(self._text.decode(chunk))

    def close(self) -> list[ServerSentEvent]:
        """The events left when the stream ends, an unterminated last one included."""
        events = self._lines(self._text.decode(b"", final=True))
        if self._tail:
            self._line(self._tail)
            self._tail = ""
        # Some servers close right after `data: [DONE]\n`; accept that event.
        event = self._dispatch()
        if event is not None:
            events.append(event)
        return events

    def _lines(self, text: str) -> list[ServerSentEvent]:
        if not self._started and text:
            self._started = True
            text = text.removeprefix("\ufeff")
        if not text:
            return []
        if self._after_cr and text.startswith("\n"):
            text = text[1:]
        self._after_cr = text.endswith("\r")
        lines = _LINE_END.split(self._tail + text)
        self._tail = lines.pop()
        events = []
        for line in lines:
            event = self._line(line)
            if event is not None:
                events.append(event)
        return events

    def _line(self, line: str) -> ServerSentEvent | None:
        if not line:
            return self._dispatch()
        if line.startswith(":"):
            return None
        name, _, value = line.partition(":")
        value = value.removeprefix(" ")
        if name == "data":
            self._data.append(value)
        elif name == "event":
            self._event = value
        return None

    def _dispatch(self) -> ServerSentEvent | None:
        data, event = self._data, self._event or "message"
        self._data, self._event = [], ""
        if not data:
            return None
        return ServerSentEvent("\n".join(data), event)


async def aiter_events(chunks: AsyncIterable[bytes]) -> AsyncIterator[ServerSentEvent]:
    """The events of a byte stream, ending when the stream ends."""
    decoder = SSEDecoder()
    async for chunk in chunks:
        for event in decoder.feed(chunk):
            yield event
    for event in decoder.close():
        yield event
