"""The emulator's in-memory world: ids, users, guilds, channels, stored messages and hosted files."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .models import DM, Channel, Guild, Json, User

DISCORD_EPOCH_MS = 1420070400000


@dataclass(frozen=True)
class HostedFile:
    """Bytes the emulator serves over HTTP, like Discord's CDN serves attachments."""

    id: int
    filename: str
    data: bytes
    content_type: str


class World:
    """Everything Discord knows; models call `dispatch` to tell the connected bot about changes."""

    def __init__(self, bot_name: str) -> None:
        self._last_id = 0
        self.users: dict[int, User] = {}
        self.guilds: dict[int, Guild] = {}
        self.channels: dict[int, Channel] = {}
        self.dm_by_user: dict[int, Channel] = {}
        self.messages: dict[int, dict[int, Json]] = {}
        # Ephemeral messages exist only for the user who sees them, not in channel history.
        self.ephemeral: dict[int, Json] = {}
        self.files: dict[int, HostedFile] = {}
        # Users whose privacy settings refuse DMs from the bot.
        self.dms_closed: set[int] = set()
        self.http_base = "http://127.0.0.1:0"
        self.sink: Callable[[str, Json], None] | None = None
        # Bots still carry a four-digit discriminator; people have "0" since the username migration.
        self.bot_user = self.add_user(bot_name, bot=True, discriminator="0001")

    def snowflake(self) -> int:
        """A fresh id that encodes the current time, strictly increasing like Discord's."""
        candidate = (int(time.time() * 1000) - DISCORD_EPOCH_MS) << 22
        self._last_id = max(candidate, self._last_id + 1)
        return self._last_id

    def dispatch(self, event: str, data: Json) -> None:
        if self.sink is not None:
            self.sink(event, data)

    def add_user(
        self, name: str, *, global_name: str | None = None, bot: bool = False, **kwargs: Any
    ) -> User:
        user = User(self.snowflake(), name, global_name, bot, **kwargs)
        self.users[user.id] = user
        return user

    def dm_channel(self, user: User) -> Channel:
        """The one DM channel between this user and the bot (created on first use, like Discord)."""
        channel = self.dm_by_user.get(user.id)
        if channel is None:
            channel = Channel(self.snowflake(), DM, None, recipient=user)
            self.dm_by_user[user.id] = channel
            self.channels[channel.id] = channel
        return channel

    def host_file(self, channel_id: int, filename: str, data: bytes, content_type: str) -> Json:
        """Store bytes and return the attachment object that points at them."""
        file = HostedFile(self.snowflake(), filename, data, content_type)
        self.files[file.id] = file
        url = f"{self.http_base}/attachments/{channel_id}/{file.id}/{filename}"
        return {
            "id": str(file.id),
            "filename": filename,
            "size": len(data),
            "url": url,
            "proxy_url": url,
            "content_type": content_type,
        }

    # -- message store -------------------------------------------------------------------------

    def store(self, message: Json) -> None:
        channel_id = int(message["channel_id"])
        if message["flags"] & 64:
            self.ephemeral[int(message["id"])] = message
        else:
            self.messages.setdefault(channel_id, {})[int(message["id"])] = message
            self.channels[channel_id].last_message_id = int(message["id"])

    def find(self, channel_id: int, message_id: int, *, ephemeral: bool = False) -> Json | None:
        found = self.messages.get(channel_id, {}).get(message_id)
        if found is None and ephemeral:
            found = self.ephemeral.get(message_id)
        return found

    def remove(self, message: Json) -> None:
        message_id = int(message["id"])
        self.ephemeral.pop(message_id, None)
        self.messages.get(int(message["channel_id"]), {}).pop(message_id, None)

    def history(self, channel_id: int, *, include_ephemeral: bool = False) -> list[Json]:
        found = list(self.messages.get(channel_id, {}).values())
        if include_ephemeral:
            found += [m for m in self.ephemeral.values() if int(m["channel_id"]) == channel_id]
        return sorted(found, key=lambda m: int(m["id"]))
