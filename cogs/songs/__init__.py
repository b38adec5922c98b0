"""Songs: /suno requests as durable jobs, polled by the bot's runner and delivered exactly once."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cogs.songs.cog import Songs

if TYPE_CHECKING:
    from bot.app import Concord


async def setup(bot: Concord) -> None:
    await bot.add_cog(Songs(bot))
