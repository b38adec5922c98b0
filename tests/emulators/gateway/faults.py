"""Faults a test can switch on for the next request(s) to one route of the gateway emulator."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class RateLimited:
    """429, with a Retry-After header unless `retry_after` is None."""

    retry_after: str | None = "1"


@dataclass(frozen=True)
class ServerError:
    """A 5xx with an HTML error page as the body (what proxies and Replit serve)."""

    status: int = 502


@dataclass(frozen=True)
class HtmlOk:
    """200 with an HTML page instead of the documented body."""


@dataclass(frozen=True)
class Status:
    """Any status with a JSON body (or text when `body` is a str)."""

    status: int
    body: Any = field(default_factory=lambda: {"error": {"message": "refused"}})
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class WrongShape:
    """200 JSON that is not the documented shape."""

    body: Any = field(default_factory=lambda: {"unexpected": True})


@dataclass(frozen=True)
class SlowFirstByte:
    """Wait `delay` seconds before answering normally."""

    delay: float


@dataclass(frozen=True)
class Hang:
    """Never answer (until the client gives up)."""


@dataclass(frozen=True)
class Disconnect:
    """Close the connection without any answer."""


@dataclass(frozen=True)
class Oversized:
    """A body of `size` bytes in the route's content type; without a Content-Length if `chunked`."""

    size: int = 2 * 1024 * 1024
    chunked: bool = False


@dataclass(frozen=True)
class StreamCut:
    """Drop the connection after `after` content chunks (no [DONE], no finish)."""

    after: int = 1


@dataclass(frozen=True)
class StreamEndsEarly:
    """End the body cleanly after `after` content chunks, without [DONE] or a finish_reason."""

    after: int = 1


@dataclass(frozen=True)
class StreamStall:
    """Send `after` content chunks, then nothing, never finishing."""

    after: int = 1


@dataclass(frozen=True)
class BadSseLine:
    """After `after` content chunks, send a `data:` line that is not JSON."""

    after: int = 0


@dataclass(frozen=True)
class BadBase64:
    """Image responses carry corrupt `b64_json`."""


@dataclass(frozen=True)
class EmptyAudio:
    """`/get-audio` answers 200 audio/mpeg with no bytes."""


Fault = (
    RateLimited
    | ServerError
    | HtmlOk
    | Status
    | WrongShape
    | SlowFirstByte
    | Hang
    | Disconnect
    | Oversized
    | StreamCut
    | StreamEndsEarly
    | StreamStall
    | BadSseLine
    | BadBase64
    | EmptyAudio
)

HTML_ERROR_PAGE = """<!DOCTYPE html>
<html lang="en">
 <head><title>502 Bad Gateway</title></head>
 <body><h1>Bad Gateway</h1><p>Run this Repl to see the results here.</p></body>
</html>
"""
