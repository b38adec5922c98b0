"""The /history export: the stored conversation rendered page by page into files under the upload limit."""

from __future__ import annotations

import io

import discord

from bot.errors import InvalidInput
from bot.services.conversations import ConversationStore, render_turns

MAX_FILES = 10  # attachments one Discord message may carry


def too_large(limit: int) -> InvalidInput:
    return InvalidInput(
        f"This conversation is too long to export here (over {MAX_FILES} files of {limit // 1024:,} KiB)."
    )


async def export_files(
    store: ConversationStore, channel_id: int, *, title: str, limit: int
) -> list[discord.File]:
    """The transcript, read in pages, as one file or (over `limit` bytes) several numbered parts."""
    parts: list[bytes] = []
    current = bytearray(f"# {title}\n\n".encode())
    async for page in store.pages(channel_id):
        for chunk in _sections(render_turns(page).encode(), limit):
            if len(current) + len(chunk) > limit:
                parts.append(bytes(current))
                current = bytearray()
                if len(parts) >= MAX_FILES:
                    raise too_large(limit)
            current += chunk
    parts.append(bytes(current))
    name = f"conversation-{channel_id}"
    if len(parts) == 1:
        return [discord.File(io.BytesIO(parts[0]), filename=f"{name}.md")]
    return [
        discord.File(io.BytesIO(data), filename=f"{name}-part{n}.md") for n, data in enumerate(parts, start=1)
    ]


def _sections(data: bytes, limit: int) -> list[bytes]:
    """A page's bytes in pieces no larger than `limit`, cut at line ends where possible."""
    pieces = []
    while len(data) > limit:
        cut = data.rfind(b"\n", 0, limit) + 1 or limit
        while cut < len(data) and cut > 0 and (data[cut] & 0xC0) == 0x80:  # never inside a UTF-8 character
            cut -= 1
        pieces.append(data[:cut])
        data = data[cut:]
    pieces.append(data)
    return pieces
