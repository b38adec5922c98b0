"""Chat: per-channel conversations with the AI, streamed into Discord."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cogs.chat.cog import Chat

if TYPE_CHECKING:
    from bot.app import Concord


async def setup(bot: Concord) -> None:
    await bot.add_cog(Chat(bot))
