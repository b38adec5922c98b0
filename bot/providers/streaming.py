"""Incremental decoders for server-sent events (chat streams) and JSON lines (GlobalAsk)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any


class StreamProtocolError(Exception):
    """The stream broke its own format (a line too long, a data line that is not JSON)."""


class LineDecoder:
    """Splits bytes into text lines (LF, CRLF or CR) across chunk boundaries, with a length cap."""

    def __init__(self, max_line: int = 1024 * 1024) -> None:
        self._buffer = bytearray()
        self._max_line = max_line
        self._pending_cr = False

    def feed(self, data: bytes) -> list[str]:
        lines: list[str] = []
        if self._pending_cr and data.startswith(b"\n"):
            data = data[1:]
        self._pending_cr = False
        self._buffer += data
        start = 0
        buf = self._buffer
        while True:
            lf = buf.find(b"\n", start)
            cr = buf.find(b"\r", start)
            if lf < 0 and cr < 0:
                break
            end = lf if cr < 0 or (0 <= lf < cr) else cr
            lines.append(buf[start:end].decode("utf-8", errors="replace"))
            if buf[end : end + 1] == b"\r":
                if end + 1 == len(buf):
                    self._pending_cr = True
                    start = end + 1
                    continue
                if buf[end + 1 : end + 2] == b"\n":
                    end += 1
            start = end + 1
        del buf[:start]
        if len(buf) > self._max_line:
            raise StreamProtocolError(f"a line exceeded {self._max_line} bytes")
        return lines

    def flush(self) -> list[str]:
        rest = self._buffer.decode("utf-8", errors="replace")
        self._buffer.clear()
        return [rest] if rest else []


@dataclass(frozen=True, slots=True)
class SSEEvent:
    data: str
    event: str | None = None

    @property
    def is_done(self) -> bool:
        return self.data.strip() == "[DONE]"

    def json(self) -> Any:
        try:
            return json.loads(self.data)
        except ValueError:
            raise StreamProtocolError("an event's data was not JSON") from None


class SSEDecoder:
    """Server-sent events per the HTML spec, enough for OpenAI-style `data:` streams."""

    def __init__(self, max_line: int = 1024 * 1024) -> None:
        self._lines = LineDecoder(max_line)
        self._data: list[str] = []
        self._event: str | None = None

    def feed(self, data: bytes) -> list[SSEEvent]:
        return self._process(self._lines.feed(data))

    def flush(self) -> list[SSEEvent]:
        events = self._process(self._lines.flush())
        return events + self._process([""])

    def _process(self, lines: list[str]) -> list[SSEEvent]:
        events: list[SSEEvent] = []
        for line in lines:
            if not line:
                if self._data:
                    events.append(SSEEvent("\n".join(self._data), self._event))
                self._data = []
                self._event = None
                continue
            if line.startswith(":"):
                continue
            name, _, value = line.partition(":")
            if value.startswith(" "):
                value = value[1:]
            if name == "data":
                self._data.append(value)
            elif name == "event":
                self._event = value
            elif name not in ("id", "retry"):
                # A line that is not an SSE field at all: an HTML page or a proxy's error text.
                raise StreamProtocolError("the stream held a line that is not a server-sent event")
        return events


class JsonLinesDecoder:
    """One JSON object per line; tolerates SSE-style `data:` prefixes and blank lines.

    With `skip_malformed`, a line that is not JSON is dropped and counted in `skipped` instead of
    ending the stream (GlobalAsk's lines are independent pieces: one bad line spoils nothing else).
    """

    def __init__(self, max_line: int = 1024 * 1024, *, skip_malformed: bool = False) -> None:
        self._lines = LineDecoder(max_line)
        self.skip_malformed = skip_malformed
        self.skipped = 0

    def feed(self, data: bytes) -> list[Any]:
        return self._parse(self._lines.feed(data))

    def flush(self) -> list[Any]:
        return self._parse(self._lines.flush())

    def _parse(self, lines: list[str]) -> list[Any]:
        out = []
        for line in lines:
            text = line.strip()
            if not text or text.startswith(":"):
                continue
            if text.startswith("data:"):
                text = text[5:].strip()
                if text == "[DONE]":
                    continue
            try:
                out.append(json.loads(text))
            except ValueError:
                if not self.skip_malformed:
                    raise StreamProtocolError("a line was not JSON") from None
                self.skipped += 1
        return out
