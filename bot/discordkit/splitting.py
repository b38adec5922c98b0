"""Splits long text into Discord-sized messages without cutting words or breaking code blocks."""

from __future__ import annotations

import re
from dataclasses import dataclass

DISCORD_LIMIT = 2000

# A fence line: up to three spaces, then ``` or ~~~ (three or more), then an optional info string.
_FENCE = re.compile(r"^ {0,3}(?P<marker>`{3,}|~{3,})(?P<info>[^`\n]*)$")


@dataclass(frozen=True, slots=True)
class Fence:
    """An open code block: the marker that opened it and its language (info string)."""

    marker: str
    info: str

    @property
    def opener(self) -> str:
        return f"{self.marker}{self.info}\n"

    @property
    def closer(self) -> str:
        return f"\n{self.marker}"


def fence_after(text: str, fence: Fence | None = None) -> Fence | None:
    """The code block still open at the end of `text`, given the one open at its start."""
    for line in text.split("\n"):
        match = _FENCE.match(line)
        if match is None:
            continue
        marker, info = match["marker"], match["info"].strip()
        if fence is None:
            fence = Fence(marker, info)
        elif marker[0] == fence.marker[0] and len(marker) >= len(fence.marker) and not info:
            fence = None
    return fence


def close_open_fence(text: str, fence: Fence | None = None) -> str:
    """`text` with a closing fence appended when it ends inside a code block."""
    still_open = fence_after(text, fence)
    return text + still_open.closer if still_open else text


def _is_blank(text: str) -> bool:
    return not text.strip()


def _cut_point(rest: str, room: int) -> tuple[int, int]:
    """Where to cut `rest` so the first part is at most `room` characters: (end of part, start of rest).

    Prefers a line break in the second half of the window, then a space, then any line break; cuts
    inside a word only when the word alone is longer than the window.
    """
    window = rest[: room + 1]
    newline = window.rfind("\n")
    if newline >= room // 2:
        return newline, newline + 1
    space = max(window.rfind(" "), window.rfind("\t"))
    if space > 0:
        return space, space + 1
    if newline > 0:
        return newline, newline + 1
    return room, room


def _drop_trailing_opener(piece: str, fence: Fence | None) -> str:
    """Move a fence opener that would end the piece to the next one (no empty code block)."""
    head, sep, last = piece.rpartition("\n")
    if sep and fence_after(head, fence) is None and _FENCE.match(last) and not _is_blank(head):
        return head
    return piece


def split_message(text: str, limit: int = DISCORD_LIMIT) -> list[str]:
    """Split `text` into messages of at most `limit` characters, none of them empty.

    A code block open at a split is closed at the end of one message and reopened (with its language)
    at the start of the next. Splitting is prefix-stable: once text has grown past a message, that
    message never changes as more text is appended (streaming relies on it).
    """
    if limit < 40:
        raise ValueError("limit must leave room for code fences")
    pages: list[str] = []
    rest = text
    fence: Fence | None = None
    while rest and not _is_blank(rest):
        prefix = fence.opener if fence else ""
        if len(prefix) + len(rest) <= limit:
            pages.append(prefix + rest)
            break
        room = limit - len(prefix)
        while True:
            end, start = _cut_point(rest, room)
            piece = _drop_trailing_opener(rest[:end], fence)
            if len(piece) < end:
                start = len(piece) + 1
            piece = piece.rstrip()
            after = fence_after(piece, fence)
            closer = after.closer if after else ""
            if len(prefix) + len(piece) + len(closer) <= limit:
                break
            if room <= 2 * len(closer):
                # Only a fence marker longer than the whole message gets here: cut it plainly.
                piece, after, closer = rest[:room], fence, ""
                start = room
                break
            room -= len(closer)
        if not _is_blank(piece):
            pages.append(prefix + piece + closer)
            fence = after
        rest = rest[start:]
        if fence is None:
            # A message never starts with the blank lines that ended the previous one.
            rest = rest.lstrip("\n")
    return pages
